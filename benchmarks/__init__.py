"""Speed and memory targets (``make bench``); not part of the test suite."""
