"""The login limits cannot be side-stepped: not by another spelling of the username, not by a
forged X-Forwarded-For, not by switching between the login page and the token endpoint; and a
lock on one username does not lock the other people behind the same address."""

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD

TOKEN = "/api/v1/auth/token/"


@pytest.fixture(autouse=True)
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_THROTTLE_RATE = "1000/min"
    cache.clear()  # the address throttle counts in the cache
    yield
    cache.clear()


def page_login(client, username, password):
    return client.post(reverse("login"), {"username": username, "password": password})


def token(client, username, password, **headers):
    return client.post(TOKEN, {"username": username, "password": password}, content_type="application/json", **headers)


def lock_alice(client):
    responses = [page_login(client, "alice", "wrong").status_code for _ in range(3)]
    assert responses == [200, 200, 429]


@pytest.mark.parametrize("variant", ["alice", "ａｌｉｃｅ", " alice ", "ALICE", "Ａｌｉｃｅ "])
def test_a_locked_username_stays_locked_under_every_spelling(annotator, variant):
    client = Client()
    lock_alice(client)
    refused = page_login(client, variant, PASSWORD)
    assert refused.status_code == 429
    assert "Too many failed attempts for this username" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_other_spellings_count_towards_the_same_lock(annotator):
    client = Client()
    for variant in ("alice", "ａｌｉｃｅ"):
        assert page_login(client, variant, "wrong").status_code == 200
    assert page_login(client, " alice ", "wrong").status_code == 429
    assert page_login(client, "alice", PASSWORD).status_code == 429


def test_a_locked_user_gets_no_token(annotator):
    lock_alice(Client())
    refused = token(Client(), "alice", PASSWORD)
    assert refused.status_code == 429
    assert refused.json()["code"] == "locked_out"
    assert int(refused["Retry-After"]) > 0
    assert "token" not in refused.json()


def test_token_failures_lock_the_login_page_too(annotator):
    client = Client()
    assert [token(client, "alice", "wrong").status_code for _ in range(2)] == [401, 401]
    assert token(client, "alice", "wrong").status_code == 401  # the third failure: locked from now on
    assert token(client, "alice", PASSWORD).status_code == 429
    assert page_login(Client(), "alice", PASSWORD).status_code == 429


def test_forged_forwarded_addresses_do_not_reset_the_user_limit(annotator):
    client = Client()
    for n in range(3):
        token(client, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
    assert token(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429


def test_forged_forwarded_addresses_do_not_escape_the_address_rate(annotator, settings):
    settings.LOGIN_THROTTLE_RATE = "5/min"
    client = Client()
    codes = [token(client, f"user{n}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code for n in range(7)]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]
    assert int(token(client, "alice", PASSWORD)["Retry-After"]) > 0


def test_behind_a_proxy_the_address_is_the_one_the_proxy_saw(annotator, settings):
    settings.LOGIN_THROTTLE_RATE = "2/min"
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = Client()
    # The proxy appends the real client address last; whatever a client puts before it is ignored.
    for forged in ("1.1.1.1", "2.2.2.2"):
        token(client, "alice", "wrong", HTTP_X_FORWARDED_FOR=f"{forged}, 192.0.2.10")
    assert token(client, "alice", "wrong", HTTP_X_FORWARDED_FOR="3.3.3.3, 192.0.2.10").status_code == 429
    # Someone else behind the same proxy, with their own address, is not slowed.
    assert token(client, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.11").status_code == 200


def test_one_locked_user_does_not_lock_colleagues_behind_the_same_address(annotator, annotator2):
    client = Client()
    lock_alice(client)
    assert page_login(client, "bob", PASSWORD).status_code == 302
    assert token(Client(), "bob", PASSWORD).status_code == 200


def test_a_successful_login_clears_the_failures(annotator):
    client = Client()
    for _ in range(2):
        page_login(client, "alice", "wrong")
    assert page_login(client, "alice", PASSWORD).status_code == 302
    client.post(reverse("logout"))
    assert [page_login(client, "alice", "wrong").status_code for _ in range(2)] == [200, 200]


def test_the_address_rate_covers_the_login_page(annotator, settings):
    settings.LOGIN_THROTTLE_RATE = "2/min"
    client = Client()
    assert [page_login(client, name, "wrong").status_code for name in ("x", "y")] == [200, 200]
    refused = page_login(client, "alice", PASSWORD)
    assert refused.status_code == 429
    assert "Too many login attempts from your address" in refused.content.decode()


def test_a_username_with_a_nul_byte_is_a_400_not_a_database_error(annotator):
    """PostgreSQL refuses NUL in text: the lock-out lookup must not send one."""
    response = token(Client(), "ali\u0000ce", PASSWORD)
    assert response.status_code == 400 and "username" in response.json()["errors"]
    assert page_login(Client(), "ali\u0000ce", PASSWORD).status_code == 200  # the form says what is wrong
