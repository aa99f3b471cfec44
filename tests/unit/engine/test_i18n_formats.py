"""The cached Babel formats: the same text as Babel's own functions, the locale parsed once."""

from __future__ import annotations

import datetime as dt
import time
from unittest import mock

import pytest
from babel import Locale
from babel.dates import format_datetime

from admin.rendering import formatter
from engine import i18n

TIMES = [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
         dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
         dt.datetime(2026, 7, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))]


@pytest.mark.parametrize("locale", ["en", "de"])
def test_format_time_says_what_babel_says(locale):
    for value in TIMES:
        expected = format_datetime(value, format="medium", tzinfo=dt.UTC,
                                   locale=Locale.parse(locale))
        assert i18n.format_time(value, locale) == expected
        assert formatter(locale).time(value) == expected  # the console shares it
    assert i18n.format_time(None, locale) == "—"


def test_the_locale_is_parsed_once_not_for_every_call():
    i18n.time_format.cache_clear()
    i18n.parsed_locale.cache_clear()
    with mock.patch.object(i18n.Locale, "parse", wraps=Locale.parse) as parse:
        for _n in range(200):
            i18n.format_time(TIMES[0], "de")
            i18n.format_ccus(1, "de")
    # Babel hands a Locale it is given to Locale.parse, which returns it as it is; a code
    # (a text) is what costs the parsing
    parsed_texts = [call for call in parse.call_args_list if isinstance(call.args[0], str)]
    assert len(parsed_texts) == 1


def test_a_cell_costs_far_less_than_babel_parsing_the_locale():
    value = TIMES[0]
    i18n.format_time(value, "de")
    started = time.perf_counter()
    for _n in range(2000):
        i18n.format_time(value, "de")
    cached = time.perf_counter() - started
    started = time.perf_counter()
    for _n in range(2000):
        format_datetime(value, format="medium", tzinfo=dt.UTC, locale=Locale.parse("de"))
    babel = time.perf_counter() - started
    assert cached < babel
