"""Market data: exchange sources, validation, gap recovery, resampling and the stores."""
