"""Languages: every page and message in English and Traditional Chinese (Taiwan), through Django's
i18n. The language follows the browser, can be switched on every page and is remembered per user;
API errors follow Accept-Language with their field names in English.

Two checks keep it that way as the code changes: no template text a person reads is left
unmarked for translation, and the committed catalogue (locale/zh_Hant) holds every marked string,
translated, with none fuzzy, none stale and no Simplified-only character.
"""

import dataclasses
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.core.management import call_command
from django.template.base import Lexer, TokenType
from django.test import override_settings
from django.utils import translation

from benchmarks.closed_loop_teachers import simplified_only
from labeling.models import UserSettings
from tests.factories import add_demonstration_task, api_client, new_client_id, service_missing

ROOT = Path(settings.BASE_DIR)
CATALOGUES = ROOT / "locale" / "zh_Hant" / "LC_MESSAGES"
TEMPLATE_DIRS = [ROOT / "labeling" / "templates", ROOT / "training" / "templates", ROOT / "templates"]
# Templates not yet marked for translation (the annotator's pages, being rebuilt as this was
# written). Empty this list once they are: the check below then covers them too.
NOT_YET_TRANSLATED: list[str] = []
# Words a page shows as they are in both languages: the product's name, key caps, units, formats,
# the arena's A and B, a version's "v" (v12), K answers.
UNTRANSLATED_WORDS = {"Yushan", "玉山", "A", "B", "K", "v", "UTC", "SHA", "sha", "JSONL", "Parquet", "zip"}
UNTRANSLATED_WORDS |= {"Ctrl", "Enter", "Esc", "a", "e", "r"}
# Text in these elements is code, key names or machine output, not prose.
VERBATIM_ELEMENTS = {"script", "style", "code", "pre", "kbd"}
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt"}
# Template blocks that fill in an attribute, not text (base.html: <main class="{% block main_class %}">).
ATTRIBUTE_BLOCKS = {"main_class"}
# The same folders `make messages` reads (Makefile: MESSAGES_ARGS).
SOURCE_FOLDERS = ["labeling", "training", "templates", "feedback_site"]
MAKEMESSAGES = {"locale": ["zh_Hant"], "add_location": "file", "no_obsolete": True, "verbosity": 0}


@pytest.fixture(autouse=True)
def default_language_afterwards():
    """A request leaves its language active in the thread (LocaleMiddleware activates it, nothing
    resets it): after a Chinese request here, the next test file's services would answer in Chinese."""
    yield
    translation.deactivate()


# --- (a) every template string a person reads is marked for translation ---------------------------


def template_paths() -> list[Path]:
    paths = sorted(path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html"))
    return [path for path in paths if str(path.relative_to(ROOT)) not in NOT_YET_TRANSLATED]


def untranslated_html(source: str) -> str:
    """The template's HTML without what Django translates or fills in: {% translate %} and
    {% blocktranslate %}…{% endblocktranslate %}, variables, tags and comments. Each becomes an
    empty string, so the text left between them is what the page shows as written."""
    ends = {"blocktranslate": "endblocktranslate", "blocktrans": "endblocktrans", "comment": "endcomment"}
    parts, skipping = [], None
    for token in Lexer(source).tokenize():
        bits = token.contents.split() if token.token_type == TokenType.BLOCK else []
        if skipping is None and bits and bits[0] in ends:
            skipping = ends[bits[0]]
        elif skipping is None and bits[:1] == ["block"] and bits[1:2] and bits[1] in ATTRIBUTE_BLOCKS:
            skipping = "endblock"
        elif skipping is not None and bits[:1] == [skipping]:
            skipping = None
        elif token.token_type == TokenType.TEXT and skipping is None:
            parts.append(token.contents)
    return "".join(parts)


class VisibleText(HTMLParser):
    """Collects text nodes and the attributes people read (title, placeholder, aria-label, alt),
    outside script, style, code, pre and kbd."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.verbatim_depth = 0
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in VERBATIM_ELEMENTS:
            self.verbatim_depth += 1
        self.found += [value for name, value in attrs if name in READ_ATTRIBUTES and value]

    def handle_endtag(self, tag):
        if tag in VERBATIM_ELEMENTS and self.verbatim_depth:
            self.verbatim_depth -= 1

    def handle_data(self, data):
        if not self.verbatim_depth:
            self.found.append(data)


def unmarked_text(source: str) -> list[str]:
    parser = VisibleText()
    parser.feed(untranslated_html(source))
    parser.close()
    words = lambda text: re.findall(r"[^\W\d_]+", text)  # noqa: E731 - letters of any script
    return [text.strip() for text in parser.found if set(words(text)) - UNTRANSLATED_WORDS]


def test_the_check_finds_unmarked_text():
    """The checker itself: text, a title and a placeholder are found; what Django translates,
    variables, code and key caps are not."""
    source = """{% load i18n %}<h1>Projects</h1><p title="Signed in">{% translate "Fine" %} {{ name }}</p>
      <input placeholder="Type here"><p>{% blocktranslate %}Also fine {{ x }}{% endblocktranslate %}</p>
      <code>python manage.py</code> <kbd>Ctrl</kbd> {# a comment #} <span>v{{ id }} · 3,952 m</span>"""
    assert unmarked_text(source) == ["Projects", "Signed in", "Type here", "v · 3,952 m"]


@pytest.mark.parametrize("path", template_paths(), ids=lambda path: str(path.relative_to(ROOT)))
def test_templates_mark_every_string_for_translation(path):
    unmarked = unmarked_text(path.read_text(encoding="utf-8"))
    assert not unmarked, (
        f"{path.relative_to(ROOT)} shows text not marked for translation: {unmarked}. Wrap it in "
        "{% translate %} or {% blocktranslate %}, run `make messages` and translate the new entries."
    )


# --- (b) the catalogue holds every marked string, translated -------------------------------------


def catalogue_keys(po: polib.POFile) -> set[tuple[str, str]]:
    return {(entry.msgctxt or "", entry.msgid) for entry in po if not entry.obsolete}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """What `make messages` would collect from the code as it is now, in a copy of the sources (so
    nothing in the working tree is written): {"django": POFile, "djangojs": POFile}."""
    if shutil.which("xgettext") is None:
        service_missing("GNU gettext (xgettext) not found: install gettext to check the catalogues")
    work = tmp_path_factory.mktemp("messages")
    for folder in SOURCE_FOLDERS:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "migrations", "locale")
        shutil.copytree(ROOT / folder, work / "src" / folder, ignore=ignore)
    out = work / "locale"
    with pytest.MonkeyPatch.context() as patch, override_settings(LOCALE_PATHS=[str(out)]):
        patch.chdir(work / "src")
        call_command("makemessages", **MAKEMESSAGES)
        call_command("makemessages", domain="djangojs", **MAKEMESSAGES)
    return {
        domain: polib.pofile(str(out / "zh_Hant" / "LC_MESSAGES" / f"{domain}.po")) for domain in ("django", "djangojs")
    }


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_the_catalogue_holds_every_marked_string(extracted, domain):
    committed = catalogue_keys(polib.pofile(str(CATALOGUES / f"{domain}.po")))
    wanted = catalogue_keys(extracted[domain])
    missing = sorted(wanted - committed)
    stale = sorted(committed - wanted)
    assert not missing, f"not in locale/zh_Hant/LC_MESSAGES/{domain}.po (run `make messages`): {missing[:10]}"
    assert not stale, f"in {domain}.po but no longer in the code (run `make messages`): {stale[:10]}"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_every_catalogue_entry_is_translated_and_none_is_fuzzy(domain):
    po = polib.pofile(str(CATALOGUES / f"{domain}.po"))
    assert len(po) > 50
    untranslated = [entry.msgid for entry in po.untranslated_entries()]
    fuzzy = [entry.msgid for entry in po.fuzzy_entries()]
    assert not untranslated, f"untranslated in {domain}.po: {untranslated[:10]}"
    assert not fuzzy, f"fuzzy in {domain}.po (check the translation, then drop the flag): {fuzzy[:10]}"


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_translations_keep_the_placeholders(domain):
    """%(name)s placeholders survive translation, or the page shows a KeyError instead of text."""
    placeholder = re.compile(r"%\(\w+\)s")
    for entry in polib.pofile(str(CATALOGUES / f"{domain}.po")):
        translations = [entry.msgstr] if not entry.msgid_plural else list(entry.msgstr_plural.values())
        for text in translations:
            assert set(placeholder.findall(text)) == set(placeholder.findall(entry.msgid)), entry.msgid


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_the_catalogue_has_no_simplified_only_characters(domain):
    simplified = simplified_only()
    po = polib.pofile(str(CATALOGUES / f"{domain}.po"))
    found = {
        entry.msgid: sorted(set(text) & simplified)
        for entry in po
        for text in [entry.msgstr, *entry.msgstr_plural.values()]
        if set(text) & simplified
    }
    assert not found, f"Simplified-only characters in the zh_Hant catalogue: {found}"


# --- (c) the browser's language, <html lang>, dates -----------------------------------------------


@pytest.mark.parametrize("accept", ["zh-TW,zh;q=0.9,en;q=0.8", "zh-Hant", "zh", "zh-HK"])
def test_a_chinese_browser_gets_chinese_pages(client, annotator, project, accept):
    client.force_login(annotator)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=accept)
    html = page.content.decode()
    assert page["Content-Language"] == "zh-hant"
    assert '<html lang="zh-hant">' in html
    assert "<h1>專案</h1>" in html and "開始標註" in html and "我的進度" in html
    assert "Start labeling" not in html


def test_other_browsers_get_english(client, annotator, project):
    client.force_login(annotator)
    for accept in ("en-US,en;q=0.9", "fr-FR", ""):
        html = client.get("/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
        assert '<html lang="en">' in html and "Start labeling" in html


def test_the_login_page_follows_the_browser_and_says_why_a_login_failed(client, db):
    html = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-TW").content.decode()
    assert "<h1>登入</h1>" in html and "使用者名稱" in html and "密碼" in html
    refused = client.post("/accounts/login/", {"username": "nobody", "password": "x"}, HTTP_ACCEPT_LANGUAGE="zh-TW")
    assert "輸入正確的" in refused.content.decode()  # Django's own message, from its zh_Hant catalogue


def test_every_page_has_the_language_switch(client, admin_user, project):
    client.force_login(admin_user)
    for url in ("/", f"/projects/{project.pk}/admin/", f"/projects/{project.pk}/rounds/", "/datasets/"):
        html = client.get(url, HTTP_ACCEPT_LANGUAGE="zh-TW").content.decode()
        assert 'action="/i18n/setlang/"' in html, url
        assert 'value="en" lang="en" class="button-link">English</button>' in html, url
        assert 'value="zh-hant" lang="zh-hant" class="button-link" aria-current="true" disabled>繁體中文' in html, url
    anonymous = client.__class__().get("/accounts/login/").content.decode()
    assert 'action="/i18n/setlang/"' in anonymous


def test_the_javascript_catalogue_serves_the_page_scripts_strings(client, db):
    def catalogue(accept: str) -> dict:
        script = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE=accept).content.decode()
        return json.loads(re.search(r"const newcatalog = (\{.*?\});", script, re.S).group(1))

    assert catalogue("zh-TW")["Saving…"] == "儲存中…"
    assert catalogue("zh-TW")["%(done)s of %(required)s review so far"] == ["目前已完成 %(done)s / %(required)s 次審查"]
    english = client.get("/jsi18n/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "newcatalog" not in english and "function gettext" in english.replace(
        "django.gettext = function", "function gettext"
    )


def test_dates_and_numbers_follow_the_language(client, admin_user, project):
    from django.utils import translation

    from training.templatetags.training_format import duration, number

    with translation.override("zh-hant"):
        assert number(1234567) == "1,234,567" and number(0.375) == "0.375"
        assert duration(250) == "4 分 10 秒" and number(True) == "是"
    with translation.override("en"):
        assert duration(250) == "4 min 10 s" and number(False) == "no"
    # Tables show the language's short date and time (Taiwan: 2026/05/12 20:45).
    from training.registry.models import ModelVersion

    ModelVersion.objects.create(project=project, name="base", storage_path="x", content_hash="0" * 64)
    client.force_login(admin_user)
    html = client.get(f"/projects/{project.pk}/models/", HTTP_ACCEPT_LANGUAGE="zh-TW").content.decode()
    assert re.search(r'<td class="small">\d{4}/\d{2}/\d{2} \d{2}:\d{2}</td>', html)


# --- (d) the switch, remembered per user ----------------------------------------------------------


def test_the_switch_is_remembered_per_user_across_logins(client, annotator, project):
    client.force_login(annotator)
    response = client.post("/i18n/setlang/", {"language": "zh-hant", "next": "/"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302 and response["Location"] == "/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hant"
    assert UserSettings.objects.get(user=annotator).language == "zh-hant"
    assert '<html lang="zh-hant">' in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    client.post("/accounts/logout/")

    # Another browser, which asks for English and has no cookie: the user's choice wins once they log in.
    other = client.__class__(HTTP_ACCEPT_LANGUAGE="en-US")
    assert '<html lang="en">' in other.get("/accounts/login/").content.decode()
    other.force_login(annotator)
    page = other.get("/")
    assert '<html lang="zh-hant">' in page.content.decode() and "開始標註" in page.content.decode()
    assert page.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hant"  # kept after logging out there too

    # Back to English, from a page: stored for the next login as well.
    other.post("/i18n/setlang/", {"language": "en", "next": "/me/"})
    assert UserSettings.objects.get(user=annotator).language == "en"
    third = client.__class__(HTTP_ACCEPT_LANGUAGE="zh-TW")
    third.force_login(annotator)
    assert '<html lang="en">' in third.get("/").content.decode()


def test_a_user_who_never_chose_follows_the_browser(client, annotator, project):
    client.force_login(annotator)
    assert '<html lang="zh-hant">' in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-TW").content.decode()
    assert '<html lang="en">' in client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert not UserSettings.objects.exists()


def test_an_unknown_language_is_not_stored(client, annotator):
    client.force_login(annotator)
    client.post("/i18n/setlang/", {"language": "fr", "next": "/"})
    client.post("/i18n/setlang/", {"language": "<script>", "next": "/"})
    assert not UserSettings.objects.exists()
    assert '<html lang="en">' in client.get("/").content.decode()


# --- (e) API errors follow Accept-Language; field names stay English -------------------------------


def test_api_errors_follow_accept_language_with_english_field_names(annotator, project):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = client.get(f"/api/v1/tasks/next/?project={project.pk}").json()
    body = {"text": "   ", "client_id": new_client_id()}
    url = f"/api/v1/tasks/{task['id']}/demonstration/"

    chinese = client.post(url, body, format="json", HTTP_ACCEPT_LANGUAGE="zh-TW").json()
    assert chinese["detail"] == "回答是空的。請先寫下理想的回答再送出。"
    assert list(chinese["errors"]) == ["text"] and chinese["code"] == "invalid"
    english = client.post(url, body, format="json", HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["detail"] == "The answer is empty. Write the ideal answer before submitting."

    # DRF's own messages come in Chinese too (its zh_Hant catalogue), still keyed by the field.
    missing = client.post(url, {"text": "答案"}, format="json", HTTP_ACCEPT_LANGUAGE="zh-TW").json()
    assert list(missing["errors"]) == ["client_id"] and missing["detail"].startswith("client_id: ")
    assert "required" not in missing["detail"]


def test_api_refusals_are_translated_per_request(annotator, researcher, project):
    """Module-level messages (roles, permissions) are lazy: each request gets its own language."""
    client = api_client(researcher)
    url = f"/api/v1/tasks/next/?project={project.pk}"
    assert client.get(url, HTTP_ACCEPT_LANGUAGE="zh-TW").json()["detail"] == "只有標註者可以標註任務。"
    assert client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()["detail"] == "Only annotators can label tasks."


def test_the_round_form_is_translated(project):
    """The round settings' labels and help, whose English lives in the ML core (training.ml), come
    translated: their help texts are extracted by the `setting(default, "help")` keyword."""
    from django.utils import translation

    from training.rounds.config import round_config_clean
    from training.rounds.views import _form_fields

    with translation.override("zh-hant"):
        sections = {section["name"]: section for section in _form_fields(round_config_clean(None, project=project))}
        sft = {field["name"]: field for field in sections["sft"]["fields"]}
        assert str(sections["sft"]["title"]) == "監督式微調（SFT）"
        assert str(sft["sft.learning_rate"]["label"]) == "學習率" and sft["sft.learning_rate"]["help"] == "最高學習率。"


def test_a_refused_round_setting_is_explained_in_the_request_language(admin_user, project):
    """The ML core (training.ml.options, no Django) words its messages in English templates; the
    API translates them, and the words in them, with the setting names left as the API takes them."""
    client = api_client(admin_user)
    config = {"sft": {"epochs": 0, "lora": "yes"}, "policy": {"algorithm": "ppo"}, "deploy": {"threshold": 2}}
    body = {"project": project.pk, "config": {**config, "evaluate": {"epoch": 1}}}

    chinese = client.post("/api/v1/rounds/", body, format="json", HTTP_ACCEPT_LANGUAGE="zh-TW")
    assert chinese.status_code == 400
    errors = chinese.json()["errors"]
    assert errors["config.sft.epochs"] == ["必須是 1 到 100 的整數"]
    assert errors["config.sft.lora"] == ["必須是布林值（true 或 false），而不是 'yes'"]
    assert errors["config.policy.algorithm"] == ["必須是 rloo, grpo, dpo 或 iterative_dpo"]
    assert errors["config.deploy.threshold"] == ["必須是 0 到 1 的勝率"]
    assert errors["config.evaluate.epoch"][0].startswith("不存在：config.evaluate 沒有 'epoch' 這項設定；可用的設定有 ")
    assert chinese.json()["detail"].startswith("config.sft.epochs 必須是 1 到 100 的整數。config.sft.lora ")

    english = client.post("/api/v1/rounds/", body, format="json", HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["errors"]["config.sft.epochs"] == ["must be a whole number from 1 to 100"]
    assert english["detail"].startswith("config.sft.epochs must be a whole number from 1 to 100. config.sft.lora ")


def test_the_round_form_refuses_a_setting_in_the_page_language(client, admin_user, project):
    client.force_login(admin_user)
    page = client.post(f"/projects/{project.pk}/rounds/", {"sft.epochs": "2.5"}, HTTP_ACCEPT_LANGUAGE="zh-TW")
    assert "sft.epochs 必須是整數。" in page.content.decode()


def test_every_round_setting_message_is_translated():
    """Every template the ML core may send, and every word that goes into one, has a translation:
    the catalogue check above covers what `translatable()` marks, this one a message built without it."""
    from training.ml import options
    from training.rounds.config import SECTIONS

    def templates(message):
        yield message.template
        for value in message.params.values():
            if isinstance(value, options.Message):
                yield from templates(value)

    @dataclasses.dataclass
    class Required:
        name: str

    sent = []
    for spec in (spec for cls in SECTIONS.values() for spec in options.field_specs(cls).values()):
        sent += [options.check_value(spec, value)[1] for value in (None, [], -(10**12), 10**12, "?", float("nan"))]
        sent += [options.parse_text(spec, text)[1] for text in ("", "?", "2.5")]
    for config_cls, raw, where in [
        (SECTIONS["sft"], {"nope": 1}, ""),
        (SECTIONS["sft"], [1], "sft"),
        (Required, {}, "r"),
    ]:
        with pytest.raises(options.SettingsError) as refused:
            options.settings_validate(config_cls, raw, where=where)
        sent += refused.value.messages.values()
    with translation.override("zh-hant"):
        untranslated = {t for message in sent if message for t in templates(message) if translation.gettext(t) == t}
    assert not untranslated
