"""L-FUSION model factory: HC18 data, foundation encoder, uncertainty heads and their export."""
