"""QRM Cloud engine: the one service layer every face calls."""
