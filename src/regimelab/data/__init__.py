"""Raw OHLCV files in, clean bars out: reading (``readers``) and validation (``validate``)."""

from regimelab.data.readers import read_raw
from regimelab.data.validate import BARS_COLUMNS, ingest, validate_bars

__all__ = ["BARS_COLUMNS", "ingest", "read_raw", "validate_bars"]
