"""Training: optimizer construction and the jitted train step over trainable/frozen partitions."""
