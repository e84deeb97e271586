"""pytest plugin of the geo-replication tests: test modules say `pytest_plugins = ["geo_plugin"]`.

It provides the fixtures of regions.py (geo, geo_bin) and, when a test fails in setup or in its
body, attaches to its report the log tail of every region of every cluster still running and
the counters of their proxies. (A separate module from regions.py so that pytest imports it
first, as a plugin, while the tests import regions.py's helpers themselves.)
"""

import pytest

from regions import failure_sections, geo, geo_bin  # noqa: F401 - fixtures


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for title, text in failure_sections():
            rep.sections.append((title, text))
