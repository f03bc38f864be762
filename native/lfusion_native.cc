// Native kernels of frame alignment (src/operators/alignFrames/kernels.ts) and of the encoder's Pillow resize
// (src/operators/encodeFrames.ts), and a posix_spawn of child processes (src/runtime/child-process.ts), through the
// C N-API (node_api.h).
//
// Each kernel is the JavaScript kernel of the same name, operation for operation: doubles wherever JavaScript
// computes in doubles, floats wherever it stores into a Float32Array, the same summation order, and no fused
// multiply-add (built with -ffp-contract=off), so that both paths give bit-identical results. Outputs are written
// into arrays the caller allocates. Arguments are checked (types, sizes); a bad call throws a JavaScript error.
#include <node_api.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern char** environ;

namespace {

// Bump with any change of a function's signature or results: the loader refuses an addon of another version.
constexpr int32_t kVersion = 4;

struct Args {
  napi_env env;
  napi_value values[12];
  size_t count = 12;
  bool ok = true;
};

bool Fail(napi_env env, const char* message) {
  napi_throw_type_error(env, "ERR_LFUSION_NATIVE", message);
  return false;
}

bool GetArgs(napi_env env, napi_callback_info info, Args& args, size_t expected) {
  args.env = env;
  if (napi_get_cb_info(env, info, &args.count, args.values, nullptr, nullptr) != napi_ok) return Fail(env, "cannot read arguments");
  if (args.count < expected) return Fail(env, "too few arguments");
  return true;
}

template <typename T>
bool Typed(napi_env env, napi_value value, napi_typedarray_type want, T** data, size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, value, &is) != napi_ok || !is) return Fail(env, "expected a typed array");
  napi_typedarray_type type;
  void* raw = nullptr;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, nullptr, nullptr) != napi_ok) return Fail(env, "cannot read a typed array");
  if (type != want) {
    return Fail(env, want == napi_float32_array ? "expected a Float32Array" : want == napi_float64_array ? "expected a Float64Array" : want == napi_uint8_array ? "expected a Uint8Array" : "expected an Int32Array");
  }
  *data = static_cast<T*>(raw);
  return true;
}

bool Int(napi_env env, napi_value value, int32_t min, int32_t* out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) return Fail(env, "expected an integer");
  if (*out < min) return Fail(env, "integer argument out of range");
  return true;
}

bool Number(napi_env env, napi_value value, double* out) {
  if (napi_get_value_double(env, value, out) != napi_ok) return Fail(env, "expected a number");
  return true;
}

bool Fits(napi_env env, size_t length, int64_t needed) {
  if (needed < 0 || static_cast<int64_t>(length) < needed) return Fail(env, "typed array shorter than its dimensions");
  return true;
}

// Bilinear sample, NaN outside the image (warp.ts `sample`). width, height >= 2.
inline double Sample(const float* image, int32_t width, int32_t height, double x, double y) {
  if (!(x >= 0 && y >= 0 && x <= width - 1 && y <= height - 1)) return NAN;
  // floor by truncation (x, y >= 0 here): std::floor is a libm call on baseline x86-64 (no SSE4.1 roundsd).
  const int32_t x0 = std::min(static_cast<int32_t>(x), width - 2);
  const int32_t y0 = std::min(static_cast<int32_t>(y), height - 2);
  const double fx = x - x0, fy = y - y0;
  const size_t i = static_cast<size_t>(y0) * width + x0;
  const double a = image[i], b = image[i + 1], c = image[i + width], d = image[i + width + 1];
  const double top = a + fx * (b - a);
  const double bottom = c + fx * (d - c);
  return top + fy * (bottom - top);
}

struct Image {
  const float* data;
  int32_t width;
  int32_t height;
};

// (image: Float32Array, width, height) at args[at..at+2]; width and height at least 2.
bool GetImage(Args& a, size_t at, Image* image) {
  float* data;
  size_t length;
  if (!Typed(a.env, a.values[at], napi_float32_array, &data, &length)) return false;
  if (!Int(a.env, a.values[at + 1], 2, &image->width) || !Int(a.env, a.values[at + 2], 2, &image->height)) return false;
  if (!Fits(a.env, length, static_cast<int64_t>(image->width) * image->height)) return false;
  image->data = data;
  return true;
}

bool GetWarp(Args& a, size_t at, double warp[6]) {
  double* data;
  size_t length;
  if (!Typed(a.env, a.values[at], napi_float64_array, &data, &length) || !Fits(a.env, length, 6)) return false;
  std::copy(data, data + 6, warp);
  return true;
}

// blur(image, width, height, kernel, out): separable blur with clamped edges; the row pass stored as floats.
napi_value Blur(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 5)) return nullptr;
  Image image;
  float *kernel, *out;
  size_t kernelLength, outLength;
  if (!GetImage(a, 0, &image) || !Typed(env, a.values[3], napi_float32_array, &kernel, &kernelLength) ||
      !Typed(env, a.values[4], napi_float32_array, &out, &outLength)) return nullptr;
  const int32_t w = image.width, h = image.height;
  if (kernelLength % 2 == 0) return Fail(env, "blur kernel length must be odd"), nullptr;
  if (!Fits(env, outLength, static_cast<int64_t>(w) * h)) return nullptr;
  const int32_t radius = static_cast<int32_t>(kernelLength / 2);
  std::vector<float> rows(static_cast<size_t>(w) * h);
  for (int32_t y = 0; y < h; y++) {
    for (int32_t x = 0; x < w; x++) {
      double sum = 0;
      for (int32_t k = -radius; k <= radius; k++) sum += static_cast<double>(kernel[k + radius]) * image.data[static_cast<size_t>(y) * w + std::min(w - 1, std::max(0, x + k))];
      rows[static_cast<size_t>(y) * w + x] = static_cast<float>(sum);
    }
  }
  for (int32_t y = 0; y < h; y++) {
    for (int32_t x = 0; x < w; x++) {
      double sum = 0;
      for (int32_t k = -radius; k <= radius; k++) sum += static_cast<double>(kernel[k + radius]) * rows[static_cast<size_t>(std::min(h - 1, std::max(0, y + k))) * w + x];
      out[static_cast<size_t>(y) * w + x] = static_cast<float>(sum);
    }
  }
  return nullptr;
}

// warpImage(image, width, height, warp, out, outWidth, outHeight, fill): out(q) = image(warp q), fill outside.
napi_value WarpImage(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 8)) return nullptr;
  Image image;
  double warp[6], fill;
  float* out;
  size_t outLength;
  int32_t outWidth, outHeight;
  if (!GetImage(a, 0, &image) || !GetWarp(a, 3, warp) || !Typed(env, a.values[4], napi_float32_array, &out, &outLength) ||
      !Int(env, a.values[5], 0, &outWidth) || !Int(env, a.values[6], 0, &outHeight) || !Number(env, a.values[7], &fill) ||
      !Fits(env, outLength, static_cast<int64_t>(outWidth) * outHeight)) return nullptr;
  for (int32_t y = 0; y < outHeight; y++) {
    for (int32_t x = 0; x < outWidth; x++) {
      const double value = Sample(image.data, image.width, image.height, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
      out[static_cast<size_t>(y) * outWidth + x] = static_cast<float>(std::isnan(value) ? fill : value);
    }
  }
  return nullptr;
}

// Radix-2 FFTs, in place, with the twiddle table of kernels.ts `twiddles` (for a stage of size 2h, h pairs
// cos, sin). Every butterfly computes exactly what the JavaScript one does; only the loop order differs.

// Bit-reversal order of n items, swapping items i and j through `swap`.
template <typename Swap>
void BitReverse(int32_t n, Swap swap) {
  for (int32_t i = 1, j = 0; i < n; i++) {
    int32_t bit = n >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) swap(i, j);
  }
}

// One butterfly of twiddle (cr, ci) between elements p and q.
inline void Butterfly(double* re, double* im, size_t p, size_t q, double cr, double ci) {
  const double tr = re[q] * cr - im[q] * ci, ti = re[q] * ci + im[q] * cr;
  re[q] = re[p] - tr;
  im[q] = im[p] - ti;
  re[p] = re[p] + tr;
  im[p] = im[p] + ti;
}

// FFT of one contiguous row of n values.
void FftRow(double* re, double* im, int32_t n, const double* table) {
  BitReverse(n, [&](int32_t i, int32_t j) {
    std::swap(re[i], re[j]);
    std::swap(im[i], im[j]);
  });
  for (int32_t size = 2, at = 0; size <= n; at += size, size <<= 1) {
    const int32_t half = size >> 1;
    for (int32_t start = 0; start < n; start += size)
      for (int32_t k = 0; k < half; k++) Butterfly(re, im, start + k, start + k + half, table[at + 2 * k], table[at + 2 * k + 1]);
  }
}

// FFTs of all columns of a rows x cols image at once: each butterfly runs along a pair of rows (contiguous memory).
void FftColumns(double* re, double* im, int32_t rows, int32_t cols, const double* table) {
  BitReverse(rows, [&](int32_t i, int32_t j) {
    std::swap_ranges(re + static_cast<size_t>(i) * cols, re + static_cast<size_t>(i + 1) * cols, re + static_cast<size_t>(j) * cols);
    std::swap_ranges(im + static_cast<size_t>(i) * cols, im + static_cast<size_t>(i + 1) * cols, im + static_cast<size_t>(j) * cols);
  });
  for (int32_t size = 2, at = 0; size <= rows; at += size, size <<= 1) {
    const int32_t half = size >> 1;
    for (int32_t start = 0; start < rows; start += size) {
      for (int32_t k = 0; k < half; k++) {
        const double cr = table[at + 2 * k], ci = table[at + 2 * k + 1];
        const size_t p = static_cast<size_t>(start + k) * cols, q = static_cast<size_t>(start + k + half) * cols;
        for (int32_t c = 0; c < cols; c++) Butterfly(re, im, p + c, q + c, cr, ci);
      }
    }
  }
}

bool PowerOfTwo(int32_t n) { return n >= 1 && (n & (n - 1)) == 0; }

// fft2(re, im, rows, cols, rowTwiddles, colTwiddles): in place, rows first, then columns (twiddles of the row
// length, then of the column length).
napi_value Fft2(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 6)) return nullptr;
  double *re, *im, *rowTwiddles, *colTwiddles;
  size_t reLength, imLength, rowLength, colLength;
  int32_t rows, cols;
  if (!Typed(env, a.values[0], napi_float64_array, &re, &reLength) || !Typed(env, a.values[1], napi_float64_array, &im, &imLength) ||
      !Int(env, a.values[2], 1, &rows) || !Int(env, a.values[3], 1, &cols) ||
      !Typed(env, a.values[4], napi_float64_array, &rowTwiddles, &rowLength) || !Typed(env, a.values[5], napi_float64_array, &colTwiddles, &colLength)) return nullptr;
  if (!PowerOfTwo(rows) || !PowerOfTwo(cols)) return Fail(env, "fft2 sides must be powers of two"), nullptr;
  const int64_t size = static_cast<int64_t>(rows) * cols;
  if (!Fits(env, reLength, size) || !Fits(env, imLength, size) || !Fits(env, rowLength, 2 * (cols - 1)) || !Fits(env, colLength, 2 * (rows - 1))) return nullptr;
  for (int32_t r = 0; r < rows; r++) FftRow(re + static_cast<size_t>(r) * cols, im + static_cast<size_t>(r) * cols, cols, rowTwiddles);
  FftColumns(re, im, rows, cols, colTwiddles);
  return nullptr;
}

// crossPower(referenceRe, referenceIm, movingRe, movingIm, outRe, outIm): moving * conj(reference), unit modulus.
napi_value CrossPower(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 6)) return nullptr;
  double* arrays[6];
  size_t lengths[6];
  for (int i = 0; i < 6; i++) if (!Typed(env, a.values[i], napi_float64_array, &arrays[i], &lengths[i])) return nullptr;
  const size_t n = lengths[0];
  for (int i = 1; i < 6; i++) if (!Fits(env, lengths[i], static_cast<int64_t>(n))) return nullptr;
  const double *rr = arrays[0], *ri = arrays[1], *mr = arrays[2], *mi = arrays[3];
  double *outRe = arrays[4], *outIm = arrays[5];
  for (size_t i = 0; i < n; i++) {
    const double r = mr[i] * rr[i] + mi[i] * ri[i];
    const double j = mi[i] * rr[i] - mr[i] * ri[i];
    const double norm = std::sqrt(r * r + j * j) + 1e-12;
    outRe[i] = r / norm;
    outIm[i] = j / norm;
  }
  return nullptr;
}

// gaussNewtonSums(template, gradientX, gradientY, width, height, moving, movingWidth, movingHeight, warp, cx, cy, out):
// the 10 Hessian entries and 4 gradient entries of one inverse-compositional step (estimate.ts `refineWarp`).
napi_value GaussNewtonSums(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 12)) return nullptr;
  float *templ, *gradientX, *gradientY;
  size_t tl, gxl, gyl, outLength;
  int32_t w, h;
  Image moving;
  double warp[6], cx, cy, *out;
  if (!Typed(env, a.values[0], napi_float32_array, &templ, &tl) || !Typed(env, a.values[1], napi_float32_array, &gradientX, &gxl) ||
      !Typed(env, a.values[2], napi_float32_array, &gradientY, &gyl) || !Int(env, a.values[3], 2, &w) || !Int(env, a.values[4], 2, &h) ||
      !GetImage(a, 5, &moving) || !GetWarp(a, 8, warp) || !Number(env, a.values[9], &cx) || !Number(env, a.values[10], &cy) ||
      !Typed(env, a.values[11], napi_float64_array, &out, &outLength)) return nullptr;
  const int64_t size = static_cast<int64_t>(w) * h;
  if (!Fits(env, tl, size) || !Fits(env, gxl, size) || !Fits(env, gyl, size) || !Fits(env, outLength, 14)) return nullptr;
  double hbb = 0, hxb = 0, hxx = 0, hyb = 0, hyx = 0, hyy = 0, hab = 0, hax = 0, hay = 0, haa = 0;
  double gb = 0, gx = 0, gy = 0, ga = 0;
  for (int32_t y = 1; y < h - 1; y++) {
    for (int32_t x = 1; x < w - 1; x++) {
      const size_t i = static_cast<size_t>(y) * w + x;
      const double value = Sample(moving.data, moving.width, moving.height, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
      if (std::isnan(value)) continue;
      const double error = value - static_cast<double>(templ[i]);
      const double dx = gradientX[i], dy = gradientY[i], u = x - cx, v = y - cy;
      const double sb = -dx * v + dy * u, sa = dx * u + dy * v;
      hbb += sb * sb; hxb += dx * sb; hxx += dx * dx; hyb += dy * sb; hyx += dy * dx; hyy += dy * dy;
      hab += sa * sb; hax += sa * dx; hay += sa * dy; haa += sa * sa;
      gb += sb * error; gx += dx * error; gy += dy * error; ga += sa * error;
    }
  }
  const double sums[14] = {hbb, hxb, hxx, hyb, hyx, hyy, hab, hax, hay, haa, gb, gx, gy, ga};
  std::copy(sums, sums + 14, out);
  return nullptr;
}

// overlapSums(template, width, height, moving, movingWidth, movingHeight, warp, out): n, sums of t, m, t^2, m^2, t*m
// over the pixels whose warped position falls inside the moving image (estimate.ts `overlapQuality`).
napi_value OverlapSums(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 8)) return nullptr;
  Image templ, moving;
  double warp[6], *out;
  size_t outLength;
  if (!GetImage(a, 0, &templ) || !GetImage(a, 3, &moving) || !GetWarp(a, 6, warp) ||
      !Typed(env, a.values[7], napi_float64_array, &out, &outLength) || !Fits(env, outLength, 6)) return nullptr;
  double n = 0, sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
  for (int32_t y = 0; y < templ.height; y++) {
    for (int32_t x = 0; x < templ.width; x++) {
      const double value = Sample(moving.data, moving.width, moving.height, warp[0] * x + warp[1] * y + warp[2], warp[3] * x + warp[4] * y + warp[5]);
      if (std::isnan(value)) continue;
      const double t = templ.data[static_cast<size_t>(y) * templ.width + x];
      n++;
      sa += t;
      sb += value;
      saa += t * t;
      sbb += value * value;
      sab += t * value;
    }
  }
  const double sums[6] = {n, sa, sb, saa, sbb, sab};
  std::copy(sums, sums + 6, out);
  return nullptr;
}

// One pass of the Pillow resize (encodeFrames.ts `greyResizer`): `coefficients` is [kernelSize, first[out],
// count[out], weights[out * kernelSize]] for `out` output positions. Integer arithmetic, exactly as Pillow's
// (and the JavaScript's): sum = 2^21 + sum(pixel * weight), then >> 22, clamped to 0..255.
struct Coefficients {
  int32_t kernel;
  const int32_t* first;
  const int32_t* count;
  const int32_t* weights;
};

bool GetCoefficients(napi_env env, napi_value value, int32_t outSize, int32_t inSize, Coefficients* c) {
  int32_t* data;
  size_t length;
  if (!Typed(env, value, napi_int32_array, &data, &length) || length < 1) return false;
  c->kernel = data[0];
  if (c->kernel < 1 || !Fits(env, length, 1 + 2 * static_cast<int64_t>(outSize) + static_cast<int64_t>(outSize) * c->kernel)) return false;
  c->first = data + 1;
  c->count = data + 1 + outSize;
  c->weights = data + 1 + 2 * static_cast<int64_t>(outSize);
  for (int32_t o = 0; o < outSize; o++) {
    if (c->first[o] < 0 || c->count[o] < 0 || c->count[o] > c->kernel || c->first[o] + c->count[o] > inSize) return Fail(env, "resize coefficients out of range");
  }
  return true;
}

inline uint8_t Clip8(int32_t sum) {
  const int32_t value = sum >> 22;
  return static_cast<uint8_t>(value < 0 ? 0 : value > 255 ? 255 : value);
}

// resizeGrey(pixels, inWidth, inHeight, out, outWidth, outHeight, columns, rows, scratch): horizontal pass into
// scratch (outWidth x inHeight), then vertical into out.
napi_value ResizeGrey(napi_env env, napi_callback_info info) {
  Args a;
  if (!GetArgs(env, info, a, 9)) return nullptr;
  uint8_t *pixels, *out, *scratch;
  size_t pixelsLength, outLength, scratchLength;
  int32_t inWidth, inHeight, outWidth, outHeight;
  Coefficients columns, rows;
  if (!Typed(env, a.values[0], napi_uint8_array, &pixels, &pixelsLength) || !Int(env, a.values[1], 1, &inWidth) || !Int(env, a.values[2], 1, &inHeight) ||
      !Typed(env, a.values[3], napi_uint8_array, &out, &outLength) || !Int(env, a.values[4], 1, &outWidth) || !Int(env, a.values[5], 1, &outHeight) ||
      !GetCoefficients(env, a.values[6], outWidth, inWidth, &columns) || !GetCoefficients(env, a.values[7], outHeight, inHeight, &rows) ||
      !Typed(env, a.values[8], napi_uint8_array, &scratch, &scratchLength) || !Fits(env, pixelsLength, static_cast<int64_t>(inWidth) * inHeight) ||
      !Fits(env, outLength, static_cast<int64_t>(outWidth) * outHeight) || !Fits(env, scratchLength, static_cast<int64_t>(outWidth) * inHeight)) return nullptr;
  for (int32_t y = 0; y < inHeight; y++) {
    const uint8_t* line = pixels + static_cast<size_t>(y) * inWidth;
    for (int32_t x = 0; x < outWidth; x++) {
      const uint8_t* from = line + columns.first[x];
      const int32_t* weights = columns.weights + static_cast<size_t>(x) * columns.kernel;
      int32_t sum = 1 << 21;
      for (int32_t k = 0; k < columns.count[x]; k++) sum += from[k] * weights[k];
      scratch[static_cast<size_t>(y) * outWidth + x] = Clip8(sum);
    }
  }
  for (int32_t y = 0; y < outHeight; y++) {
    const int32_t* weights = rows.weights + static_cast<size_t>(y) * rows.kernel;
    for (int32_t x = 0; x < outWidth; x++) {
      int32_t sum = 1 << 21;
      for (int32_t k = 0; k < rows.count[y]; k++) sum += scratch[static_cast<size_t>(rows.first[y] + k) * outWidth + x] * weights[k];
      out[static_cast<size_t>(y) * outWidth + x] = Clip8(sum);
    }
  }
  return nullptr;
}

// Child processes without fork(). libuv's uv_spawn forks on Linux: the whole page table of this process is copied,
// and every page this process writes afterwards takes a copy-on-write fault (measured: about 45 thousand faults, a
// quarter of both cores for the next second and a half, each time ffmpeg starts beside the inference workers).
// posix_spawn (glibc >= 2.24: clone with CLONE_VM | CLONE_VFORK) shares the memory until the child's exec instead.

bool Utf8(napi_env env, napi_value value, std::string* out) {
  size_t length;
  if (napi_get_value_string_utf8(env, value, nullptr, 0, &length) != napi_ok) return Fail(env, "expected a string");
  out->resize(length);
  return napi_get_value_string_utf8(env, value, out->data(), length + 1, &length) == napi_ok || Fail(env, "cannot read a string");
}

bool SetInt(napi_env env, napi_value object, const char* name, int32_t value) {
  napi_value v;
  return napi_create_int32(env, value, &v) == napi_ok && napi_set_named_property(env, object, name, v) == napi_ok;
}

bool CloseOnExecPipe(int fds[2]) {
#ifdef __linux__
  return pipe2(fds, O_CLOEXEC) == 0;
#else
  if (pipe(fds) != 0) return false;
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  return true;
#endif
}

// spawnPiped(file, args, piped): starts `file` with argv [file, ...args] and this process's environment, stdin from
// /dev/null; piped[0] and piped[1] say whether its stdout and stderr are pipes to this process (else /dev/null).
// Every signal starts at its default disposition, unblocked, as uv_spawn does. Returns { pid, stdout, stderr } (the
// pipes' read ends, -1 where /dev/null), or { errno } when the spawn failed (ENOENT, EACCES, ...).
napi_value SpawnPiped(napi_env env, napi_callback_info info) {
  Args a{env};
  if (!GetArgs(env, info, a, 3)) return nullptr;
  std::string file;
  if (!Utf8(env, a.values[0], &file)) return nullptr;
  bool isArray = false;
  uint32_t argCount = 0;
  if (napi_is_array(env, a.values[1], &isArray) != napi_ok || !isArray || napi_get_array_length(env, a.values[1], &argCount) != napi_ok) {
    Fail(env, "expected an array of arguments");
    return nullptr;
  }
  std::vector<std::string> args(argCount + 1);
  args[0] = file;
  for (uint32_t i = 0; i < argCount; i++) {
    napi_value arg;
    if (napi_get_element(env, a.values[1], i, &arg) != napi_ok || !Utf8(env, arg, &args[i + 1])) return nullptr;
  }
  bool piped[3] = {false};  // by descriptor: stdin never
  for (uint32_t i = 0; i < 2; i++) {
    napi_value mode;
    if (napi_get_element(env, a.values[2], i, &mode) != napi_ok || napi_get_value_bool(env, mode, &piped[i + 1]) != napi_ok) {
      Fail(env, "expected two booleans (stdout and stderr piped)");
      return nullptr;
    }
  }
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  int ours[3] = {-1, -1, -1};
  int theirs[3] = {-1, -1, -1};
  int error = 0;
  for (int i = 0; i < 3 && error == 0; i++) {
    if (!piped[i]) continue;
    int fds[2];
    if (!CloseOnExecPipe(fds)) error = errno;
    else ours[i] = fds[0], theirs[i] = fds[1];
  }
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attributes);
  for (int i = 0; i < 3; i++) {
    // dup2 clears close-on-exec on the child's copy; every other descriptor of this process is close-on-exec.
    if (piped[i]) posix_spawn_file_actions_adddup2(&actions, theirs[i], i);
    else posix_spawn_file_actions_addopen(&actions, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
  }
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attributes, &all);  // Node ignores SIGPIPE; ffmpeg must not inherit that
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  if (error == 0) error = posix_spawn(&pid, file.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  for (int i = 0; i < 3; i++) {
    if (theirs[i] >= 0) close(theirs[i]);
    if (error != 0 && ours[i] >= 0) close(ours[i]), ours[i] = -1;
  }

  napi_value result;
  if (napi_create_object(env, &result) != napi_ok) return nullptr;
  if (error != 0) return SetInt(env, result, "errno", error) ? result : nullptr;
  const bool ok = SetInt(env, result, "pid", pid) && SetInt(env, result, "stdout", ours[1]) && SetInt(env, result, "stderr", ours[2]);
  return ok ? result : nullptr;
}

// reapChild(pid): null while the child runs; once it has ended (and is reaped), { code } or { signal } (a number);
// { errno } when there is no such child.
napi_value ReapChild(napi_env env, napi_callback_info info) {
  Args a{env};
  int32_t pid;
  if (!GetArgs(env, info, a, 1) || !Int(env, a.values[0], 1, &pid)) return nullptr;
  int status = 0;
  pid_t done;
  do done = waitpid(pid, &status, WNOHANG);
  while (done < 0 && errno == EINTR);
  const int waitError = errno;
  napi_value result;
  if (done == 0) {
    napi_get_null(env, &result);
    return result;
  }
  if (napi_create_object(env, &result) != napi_ok) return nullptr;
  bool ok = done < 0 ? SetInt(env, result, "errno", waitError)
            : WIFSIGNALED(status) ? SetInt(env, result, "signal", WTERMSIG(status))
                                  : SetInt(env, result, "code", WEXITSTATUS(status));
  return ok ? result : nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  const struct {
    const char* name;
    napi_callback callback;
  } functions[] = {{"blur", Blur}, {"warpImage", WarpImage}, {"fft2", Fft2}, {"crossPower", CrossPower}, {"gaussNewtonSums", GaussNewtonSums}, {"overlapSums", OverlapSums}, {"resizeGrey", ResizeGrey}, {"spawnPiped", SpawnPiped}, {"reapChild", ReapChild}};
  for (const auto& f : functions) {
    napi_value fn;
    if (napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.callback, nullptr, &fn) != napi_ok || napi_set_named_property(env, exports, f.name, fn) != napi_ok) return nullptr;
  }
  napi_value version;
  if (napi_create_int32(env, kVersion, &version) != napi_ok || napi_set_named_property(env, exports, "version", version) != napi_ok) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(lfusion_native, Init)
