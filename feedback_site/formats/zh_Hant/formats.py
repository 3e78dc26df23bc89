"""Traditional Chinese as written in Taiwan: Django's zh_Hant formats, with numbers grouped in
thousands by commas (3,952 公尺), as Taiwanese pages and documents write them, not by 萬 without
a separator, and a compact date and time for tables."""

from django.conf.locale.zh_Hant.formats import *  # noqa: F403 - every other format as Django has it

SHORT_DATETIME_FORMAT = "Y/m/d H:i"  # 2026/05/12 20:45
THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
