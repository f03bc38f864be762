// The overlay viewer: connects to the SDK's WebSocket (docs/protocol.md) and draws, over the frame the model saw,
// the head contour (`mask`), the fused uncertainty as a heat map (`fused`), the OOD state, live stats and the source
// state. Reconnects by itself with backoff and resumes from the last `seq` it saw (`?since=`). `?path=clip` shows the
// clip path instead (`clip.mask`, `clip.fused`, the window OOD score, clip alerts and the clip heads' biometry): its results are messages of
// their own (`path: "clip"`), each with the image of its frame; the other path's messages are skipped.
// Plain browser JavaScript, no dependencies: the SDK's HTTP server serves this file as it is.

const PATH = new URLSearchParams(location.search).get('path') === 'clip' ? 'clip' : 'frame';
const PLANE = PATH === 'clip' ? { mask: 'clip.mask', fused: 'clip.fused' } : { mask: 'mask', fused: 'fused' };
const WANTED_STREAMS = ['image', PLANE.mask, PLANE.fused];
const BACKOFF = { initialMs: 250, factor: 2, maxMs: 5000 };
const CONTOUR = '#00ff00';
const CONTOUR_OUTLINE = 'rgba(0, 0, 0, 0.7)';
/** The biometry ellipse and calipers: cyan when the measurement is ok, amber when it is not to be trusted. */
const BIOMETRY = { ok: '#00e5ff', other: '#ffb000' };

/** What the viewer knows; also read by the end-to-end test (`window.lfusionViewer`). */
const state = {
  connection: 'connecting',
  /** Successful connections (hello received) so far. */
  connects: 0,
  /** The last `seq` seen on any message: resumed from after a reconnect. */
  lastSeq: 0,
  framesReceived: 0,
  framesDrawn: 0,
  /** seq and index of the frame on screen. */
  drawn: null,
  /** Alert ids raised and not yet cleared. */
  activeAlerts: new Map(),
  source: null,
  /** The latest `best-plane` message's suggestion. */
  bestPlane: null,
};
/** How long the "freeze now" prompt stays up after a best-plane message (ms). */
const FREEZE_PROMPT_MS = 2000;
window.lfusionViewer = state;

const $ = (id) => document.getElementById(id);
const overlay = $('overlay');
const context = overlay.getContext('2d');
const layers = { contour: $('show-contour'), heat: $('show-heat') };

// ------------------------------------------------------------------------------------------------
// Connection
// ------------------------------------------------------------------------------------------------

function websocketUrl() {
  const page = new URLSearchParams(location.search);
  const given = page.get('ws');
  const base = given ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  // The access token the server printed with the viewer's URL (docs/integration.md, "Security").
  const token = page.get('token');
  const query = token === null ? '' : `token=${encodeURIComponent(token)}&`;
  // since=0 on the first connection too: the server re-sends the alerts it holds, so an alert raised before the
  // page opened is shown.
  return `${base}${base.includes('?') ? '&' : '?'}${query}since=${state.lastSeq}`;
}

let failures = 0;

function connect() {
  const socket = new WebSocket(websocketUrl());
  socket.binaryType = 'arraybuffer';
  socket.onmessage = ({ data }) => {
    if (typeof data === 'string') onText(socket, JSON.parse(data));
    else onFrame(data);
  };
  socket.onclose = () => {
    const delay = Math.min(BACKOFF.initialMs * BACKOFF.factor ** failures, BACKOFF.maxMs);
    failures += 1;
    setConnection('reconnecting', `reconnecting in ${(delay / 1000).toFixed(1)} s`);
    setTimeout(connect, delay);
  };
}

function setConnection(value, label = value) {
  state.connection = value;
  $('connection').dataset.state = value;
  $('connection').textContent = label;
}

function noteSeq(seq) {
  if (Number.isInteger(seq) && seq > state.lastSeq) state.lastSeq = seq;
}

// ------------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------------

function onText(socket, message) {
  noteSeq(message.seq);
  switch (message.type) {
    case 'hello': {
      failures = 0;
      state.connects += 1;
      setConnection('live');
      $('stat-model').textContent = `${message.model.name} (${message.model.input.width}x${message.model.input.height})`;
      const wanted = WANTED_STREAMS.filter((name) => message.streams.includes(name));
      if (wanted.join() !== message.subscribed.join()) socket.send(JSON.stringify({ type: 'subscribe', streams: wanted }));
      $('legend-section').hidden = $('heat-layer').hidden = !message.streams.includes(PLANE.fused);
      if (message.source) showSource(message.source);
      break;
    }
    case 'stats':
      showStats(message.stats);
      break;
    case 'alert':
      if ((message.alert.path ?? 'frame') !== PATH) break;
      if (message.alert.kind === 'raised') state.activeAlerts.set(message.alert.id, message.alert);
      else state.activeAlerts.delete(message.alert.id);
      showAlerts();
      break;
    case 'source':
      showSource(message.event);
      break;
    case 'best-plane':
      if (PATH !== 'frame') break;
      state.bestPlane = message.best;
      showBestPlane(message.best);
      break;
    case 'error':
      console.warn(`server: ${message.code}: ${message.message}`);
      break;
    default:
      break;
  }
}

/** Splits a binary frame message into its header and plane views (docs/protocol.md). */
function decodeFrame(buffer) {
  const headerLength = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, headerLength)));
  const planes = {};
  for (const plane of header.planes) planes[plane.name] = { ...plane, data: new Uint8Array(buffer, 4 + headerLength + plane.offset, plane.length) };
  return { header, planes };
}

let pending = null;

function onFrame(buffer) {
  const frame = decodeFrame(buffer);
  noteSeq(frame.header.seq);
  if ((frame.header.path ?? 'frame') !== PATH) return; // the other path's result (e.g. the 2D one of a frame)
  state.framesReceived += 1;
  showOod(PATH === 'clip' ? frame.header.clipOod : frame.header.ood);
  if (!frame.planes.image) return; // before our subscription took effect
  const scheduled = pending !== null;
  pending = frame;
  if (!scheduled) requestAnimationFrame(drawPending);
}

// ------------------------------------------------------------------------------------------------
// Drawing
// ------------------------------------------------------------------------------------------------

/** An offscreen canvas holding one plane as RGBA, drawn scaled onto the overlay. */
function planeCanvas() {
  const canvas = document.createElement('canvas');
  return { canvas, context: canvas.getContext('2d') };
}
const imageLayer = planeCanvas();
const heatLayer = planeCanvas();

function paint(layer, plane, colour) {
  if (layer.canvas.width !== plane.width || layer.canvas.height !== plane.height) {
    layer.canvas.width = plane.width;
    layer.canvas.height = plane.height;
  }
  const pixels = layer.context.createImageData(plane.width, plane.height);
  const rgba = pixels.data;
  for (let i = 0; i < plane.data.length; i++) colour(plane.data[i], rgba, i * 4);
  layer.context.putImageData(pixels, 0, 0);
}

const grey = (q, rgba, at) => {
  rgba[at] = rgba[at + 1] = rgba[at + 2] = q;
  rgba[at + 3] = 255;
};

/**
 * A "hot" colour map (red, orange, yellow, white: red never below green, so never mistaken for the contour).
 * Transparent over the lower part of the range and at most 60% opaque, so the image stays readable and only the
 * most uncertain parts of the frame stand out.
 */
function heatColour(t) {
  const clamp = (v) => Math.max(0, Math.min(1, v));
  const fade = clamp((t - 0.35) / 0.5);
  return [255, clamp(2 * t - 0.6) * 255, clamp(3 * t - 2) * 255, fade * fade * (3 - 2 * fade) * 0.6 * 255];
}
const HEAT_TABLE = Array.from({ length: 256 }, (_, q) => heatColour(q / 255));
const heat = (q, rgba, at) => {
  const colour = HEAT_TABLE[q];
  rgba[at] = colour[0];
  rgba[at + 1] = colour[1];
  rgba[at + 2] = colour[2];
  rgba[at + 3] = colour[3];
};

/** Fits the overlay into the stage at the frame's aspect ratio, in device pixels. */
function fitOverlay(aspect) {
  const stage = $('stage');
  const ratio = window.devicePixelRatio || 1;
  const room = { width: stage.clientWidth - 20, height: stage.clientHeight - 20 };
  const cssWidth = Math.max(1, Math.floor(Math.min(room.width, room.height * aspect)));
  const cssHeight = Math.max(1, Math.round(cssWidth / aspect));
  if (overlay.width !== Math.round(cssWidth * ratio) || overlay.height !== Math.round(cssHeight * ratio)) {
    overlay.width = Math.round(cssWidth * ratio);
    overlay.height = Math.round(cssHeight * ratio);
    overlay.style.width = `${cssWidth}px`;
    overlay.style.height = `${cssHeight}px`;
  }
}

/** The edges between head and background pixels of a label map, as one path in overlay coordinates. */
function contourPath(mask, scaleX, scaleY) {
  const { width, height, data } = mask;
  const path = new Path2D();
  const at = (x, y) => (x >= 0 && y >= 0 && x < width && y < height ? data[y * width + x] : 0);
  for (let y = 0; y <= height; y++) {
    for (let x = 0; x <= width; x++) {
      const here = at(x, y) > 0;
      if (here !== at(x - 1, y) > 0) {
        path.moveTo(x * scaleX, y * scaleY);
        path.lineTo(x * scaleX, (y + 1) * scaleY);
      }
      if (here !== at(x, y - 1) > 0) {
        path.moveTo(x * scaleX, y * scaleY);
        path.lineTo((x + 1) * scaleX, y * scaleY);
      }
    }
  }
  return path;
}

/** The frame on screen, redrawn when a layer is switched on or off. */
let shown = null;

function drawPending() {
  const frame = pending;
  pending = null;
  draw(frame);
  state.framesDrawn += 1;
  state.drawn = { seq: frame.header.seq, index: frame.header.frame.index };
}

function draw(frame) {
  shown = frame;
  const { header } = frame;
  // The chosen path's planes under the names the drawing uses.
  const planes = { image: frame.planes.image, mask: frame.planes[PLANE.mask], fused: frame.planes[PLANE.fused] };
  $('waiting').hidden = true;
  fitOverlay(header.frame.width / header.frame.height);
  const { width, height } = overlay;

  paint(imageLayer, planes.image, grey);
  context.imageSmoothingEnabled = true;
  context.drawImage(imageLayer.canvas, 0, 0, width, height);

  if (planes.fused) {
    showLegend(planes.fused);
    if (layers.heat.checked) {
      paint(heatLayer, planes.fused, heat);
      context.drawImage(heatLayer.canvas, 0, 0, width, height);
    }
  }
  if (planes.mask && layers.contour.checked) {
    const path = contourPath(planes.mask, width / planes.mask.width, height / planes.mask.height);
    const line = Math.max(2, Math.round(width / 400));
    context.lineCap = 'round';
    context.strokeStyle = CONTOUR_OUTLINE;
    context.lineWidth = line + 2;
    context.stroke(path);
    context.strokeStyle = CONTOUR;
    context.lineWidth = line;
    context.stroke(path);
  }

  drawBiometry(header.biometry, width / header.frame.width, height / header.frame.height);

  const f = header.frame;
  $('stat-frame').textContent = `#${f.index} at ${f.pts.toFixed(2)} s, ${f.width}x${f.height}`;
  const r = header.region;
  $('stat-region').textContent = r ? `${r.origin} ${r.x},${r.y} ${r.width}x${r.height} of ${header.screen.width}x${header.screen.height}` : 'whole frame';
}

/** The head ellipse with BPD and OFD as calipers (frame pixels scaled to the overlay), and the numbers beside. */
function drawBiometry(biometry, scaleX, scaleY) {
  showBiometry(biometry);
  const e = biometry?.ellipse;
  // Under an OOD alert the head is not to be trusted: no contour, no numbers (showBiometry).
  if (!e || biometry.status === 'ood') return;
  const colour = biometry.status === 'ok' ? BIOMETRY.ok : BIOMETRY.other;
  const line = Math.max(2, Math.round(overlay.width / 500));
  const at = (u, v) => [(e.cx + u * Math.cos(e.angle) - v * Math.sin(e.angle)) * scaleX, (e.cy + u * Math.sin(e.angle) + v * Math.cos(e.angle)) * scaleY];
  const outline = new Path2D();
  for (let i = 0; i <= 120; i++) {
    const t = (2 * Math.PI * i) / 120;
    const [x, y] = at(e.a * Math.cos(t), e.b * Math.sin(t));
    if (i === 0) outline.moveTo(x, y);
    else outline.lineTo(x, y);
  }
  const calipers = new Path2D();
  const tick = 0.06 * e.b;
  for (const [u, v, du, dv] of [[e.a, 0, 0, tick], [0, e.b, tick, 0]]) {
    calipers.moveTo(...at(-u, -v));
    calipers.lineTo(...at(u, v));
    for (const sign of [-1, 1]) {
      calipers.moveTo(...at(sign * u - du, sign * v - dv));
      calipers.lineTo(...at(sign * u + du, sign * v + dv));
    }
  }
  context.setLineDash([]);
  context.strokeStyle = colour;
  context.lineWidth = line;
  context.stroke(outline);
  context.setLineDash([3 * line, 2 * line]);
  context.stroke(calipers);
  context.setLineDash([]);
}

const fixed = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

function showBiometry(biometry) {
  $('biometry-section').hidden = !biometry;
  if (!biometry) return;
  const pill = $('bio-status');
  pill.textContent = biometry.status;
  pill.dataset.state = biometry.status === 'ok' ? 'ok' : biometry.status === 'no-head' || biometry.status === 'ood' ? 'lost' : 'near';
  const p = biometry.status === 'ood' ? null : biometry.pooled;
  const unit = biometry.unit;
  $('bio-hc').textContent = p ? `${fixed(p.hc.median)} ${unit} (95%: ${fixed(p.hc.low)}-${fixed(p.hc.high)})` : '-';
  $('bio-diameters').textContent = p ? `${fixed(p.bpd.median)} / ${fixed(p.ofd.median)} ${unit}` : '-';
  const ga = p ? biometry.ga : null;
  $('bio-ga').textContent = ga ? (ga.inRange ? `${fixed(ga.median)} w (${fixed(ga.low)}-${fixed(ga.high)})` : 'outside range') : unit === 'px' ? 'needs pixel spacing' : '-';
}

let freezeTimer;

/** The best plane so far: its frame and HC, and a "freeze now" prompt for a moment after it arrives. */
function showBestPlane(best) {
  const hc = best.hc;
  $('bio-best').textContent = `frame ${best.frameIndex}: HC ${fixed(hc.median)} ${best.unit} (95%: ${fixed(hc.low)}-${fixed(hc.high)})`;
  $('bio-freeze').hidden = false;
  clearTimeout(freezeTimer);
  freezeTimer = setTimeout(() => ($('bio-freeze').hidden = true), FREEZE_PROMPT_MS);
}

function showLegend(fused) {
  const legend = $('legend');
  if (!legend.dataset.painted) {
    const ctx = legend.getContext('2d');
    for (let x = 0; x < legend.width; x++) {
      // Over mid grey, as the map is seen over the image.
      const [r, g, b, a] = heatColour(x / (legend.width - 1));
      const mix = (c) => Math.round((c * a + 128 * (255 - a)) / 255);
      ctx.fillStyle = `rgb(${mix(r)}, ${mix(g)}, ${mix(b)})`;
      ctx.fillRect(x, 0, 1, legend.height);
    }
    legend.dataset.painted = 'yes';
  }
  $('legend-min').textContent = formatValue(fused.min);
  $('legend-max').textContent = formatValue(fused.min + 255 * fused.scale);
}

const formatValue = (value) => (value === 0 ? '0' : Math.abs(value) < 0.01 || Math.abs(value) >= 1000 ? value.toExponential(1) : value.toPrecision(2));

// ------------------------------------------------------------------------------------------------
// Status panels
// ------------------------------------------------------------------------------------------------

function showOod(ood) {
  const pill = $('ood');
  if (state.activeAlerts.size > 0) return; // the alert state wins over the per-frame score
  if (!ood) {
    pill.dataset.state = 'none';
    pill.textContent = 'OOD: n/a';
    return;
  }
  pill.dataset.state = ood.above ? 'near' : 'in';
  pill.textContent = ood.reasons
    ? `OOD score ${formatValue(ood.score)}: ${ood.reasons.length > 0 ? describeReasons(ood.reasons) : 'no evidence fired'}`
    : `OOD score ${formatValue(ood.score)} ${ood.above ? '>' : '<='} ${formatValue(ood.threshold)}`;
}

/** The fused decision's reasons, e.g. `wrong-anatomy (density 412 > 96.3), no-head (head-area-low ...)`. */
function describeReasons(reasons) {
  return reasons.map((r) => `${r.reason} (${r.evidence} ${formatValue(r.score)} > ${formatValue(r.threshold)})`).join(', ');
}

function showAlerts() {
  const banner = $('alert-banner');
  const active = [...state.activeAlerts.values()];
  banner.hidden = active.length === 0;
  if (active.length === 0) {
    $('ood').dataset.state = 'in';
    $('ood').textContent = 'OOD: cleared';
    return;
  }
  const latest = active.at(-1);
  $('ood').dataset.state = 'alert';
  $('ood').textContent = 'OOD ALERT';
  $('alert-detail').textContent = latest.reasons?.length
    ? `${describeReasons(latest.reasons)}, since frame ${latest.startFrame}`
    : `since frame ${latest.startFrame}, peak ${formatValue(latest.peakScore)} (threshold ${formatValue(latest.threshold)}, ${latest.map})`;
}

function showSource(event) {
  state.source = event;
  const pill = $('source');
  if (event.type === 'source-lost') {
    pill.dataset.state = 'lost';
    pill.textContent = `source lost (${event.code}): retry ${event.attempt} in ${(event.retryInMs / 1000).toFixed(1)} s`;
    pill.title = event.message;
  } else {
    pill.dataset.state = 'restored';
    pill.textContent = `source restored after ${(event.downtimeMs / 1000).toFixed(1)} s`;
    pill.title = '';
  }
}

function showStats(stats) {
  const total = stats.latency.total;
  $('stat-fps').textContent = `${stats.fpsIn.toFixed(1)} / ${stats.fpsOut.toFixed(1)}`;
  $('stat-latency').textContent = total ? `${total.p50.toFixed(0)} / ${total.p90.toFixed(0)} ms` : '-';
  $('stat-dropped').textContent = `${stats.dropped} of ${stats.framesIn}`;
  $('stat-stages').textContent =
    Object.entries(stats.latency)
      .filter(([stage]) => stage !== 'total')
      .map(([stage, value]) => `${stage} ${value.p50.toFixed(1)}`)
      .join(', ') || '-';
}

for (const box of Object.values(layers)) box.addEventListener('change', () => shown && draw(shown));

connect();
