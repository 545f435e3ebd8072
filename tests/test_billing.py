"""Billing a platform can run on: price schedules, key scopes/expiry/revocation/caps, redemption codes,
refunds, referrals; through a live server (google-genai, openai, httpx, the CLI) and at ledger level."""

from __future__ import annotations

import base64
import io
import json
import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from conftest import astronaut, gemini_body, http, png_bytes, start_server, wait_for
from sqlalchemy import func, select
from test_money import _swallow, account_state

from flashbulb.api.receipt import prices_json
from flashbulb.billing import ledger, prices, quotes
from flashbulb.config import Settings
from flashbulb.engine.registry import Registry
from flashbulb.engine.types import ImageRequest
from flashbulb.errors import FlashbulbError
from flashbulb.gateway import accounts
from flashbulb.store import db as store
from flashbulb.store.tables import Account, Hold, LedgerEntry

CONFIG = """
[prices.flashbulb-photo]
image = "0.002"
small = "0.001"
large = "0.004"
input_image = "0.0005"
quality = { low = 50, high = 150 }

[referrals]
percent = 10
days = 30
"""


@pytest.fixture(scope="module")
def billing(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("billing")
    server = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}", CONFIG)
    yield server
    server.stop()


def admin(server, method: str, path: str, **kwargs) -> httpx.Response:
    return http.request(
        method, f"{server.base_url}/admin{path}", headers={"x-goog-api-key": server.admin_key}, timeout=30, **kwargs
    )


def own(server, key: str, method: str, path: str, **kwargs) -> httpx.Response:
    return http.request(method, f"{server.base_url}/flashbulb{path}", headers={"x-goog-api-key": key}, timeout=30, **kwargs)


def small_body() -> dict:
    return gemini_body(png_bytes(astronaut(16)))


def entries(server, name: str, kind: str) -> list[tuple[int, str | None]]:
    database = store.connect(server.database_url)
    try:
        with database.connect() as conn:
            account_id = conn.execute(select(Account.id).where(Account.name == name)).scalar_one()
            return [
                (r.amount_micros, r.request_id)
                for r in conn.execute(
                    select(LedgerEntry)
                    .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == kind)
                    .order_by(LedgerEntry.id)
                )
            ]
    finally:
        database.dispose()


# ---- prices ----


def price_book(settings: Settings) -> prices.PriceBook:
    return prices.PriceBook(settings.prices, Registry.default(settings).priced_as())


def test_price_config_plain_and_table_forms_and_clear_errors():
    settings = Settings()
    settings.apply_toml(
        {
            "prices": {
                "flashbulb-photo": "0.003",
                "flux2-klein-4b": {"image": "0.02", "large": "0.03", "input_image": "0.001", "quality": {"high": 150}},
            }
        }
    )
    assert settings.prices["flashbulb-photo"] == prices.PriceSchedule.flat(3_000)
    assert settings.prices["flux2-klein-4b"] == prices.PriceSchedule(20_000, 20_000, 30_000, 1_000, (("high", 150),))
    book = price_book(settings)
    assert book.schedule("flux2-klein-4b").standard == 20_000
    assert prices_json(book.schedule("flux2-klein-4b"))["image_micros"] == {
        "small": 20_000,
        "standard": 20_000,
        "large": 30_000,
    }
    bad = [
        ({"m": {"large": "0.1"}}, "needs `image`"),
        ({"m": {"image": "0.1", "huge": "1"}}, "unknown field(s) huge"),
        ({"m": {"image": "0.1", "quality": {"ultra": 120}}}, "quality.ultra is not one of low, medium, high"),
        ({"m": {"image": "0.1", "quality": {"high": "150"}}}, "whole percent"),
        ({"m": "-0.1"}, "must not be negative"),
        ({"m": "0.0000001"}, "more than 6 decimal places"),
        ({"m": {"image": True}}, "amount of USD"),
    ]
    for doc, message in bad:
        with pytest.raises(ValueError, match=r"flashbulb\.toml") as caught:
            Settings().apply_toml({"prices": doc})
        assert message in str(caught.value), (doc, caught.value)
    with pytest.raises(ValueError, match="no model named nope"):
        settings = Settings()
        settings.apply_toml({"prices": {"nope": "1"}})
        price_book(settings)
    with pytest.raises(ValueError, match=r"\[referrals\]"):
        Settings().apply_toml({"referrals": {"percent": 120}})


def test_every_model_has_a_list_price_and_an_own_backend_never_takes_a_catalog_ones():
    from flashbulb.engine.backends.diffusion import catalog

    assert {"flashbulb-photo", *catalog.by_name()} <= set(prices.LIST_PRICES)
    settings = Settings()
    # An operator's own backend in a catalog model's name: the own-backend price, not the catalog's.
    settings.apply_toml({"models": {"flux2-klein-4b": {"backend": "fault_backends:FaultBackend"}, "mine": {"like": "sd-turbo"}}})
    book = price_book(settings)
    assert book.schedule("flux2-klein-4b").standard == prices.OWN_BACKEND_PRICE
    assert book.schedule("mine").standard == prices.LIST_PRICES["sd-turbo"]
    with pytest.raises(ValueError, match=r"\[models\.mine\]\.price_usd"):
        Settings().apply_toml({"models": {"mine": {"like": "sd-turbo", "price_usd": "-1"}}})


def test_size_classes_quality_inputs_and_batch_discount_are_priced_exactly():
    schedule = prices.PriceSchedule(
        small=1_000, standard=2_000, large=4_000, input_image=500, quality_percent=(("high", 150), ("low", 50))
    )
    assert [prices.size_class(p) for p in (512 * 512, 500_000, 500_001, 1024 * 1024, 1_200_000, 1536 * 1024)] == [
        "small",
        "small",
        "standard",
        "standard",
        "standard",
        "large",
    ]
    request = ImageRequest(request_id="q", model="flashbulb-photo", prompt="x", images=[astronaut(8)] * 2, n=2, quality="high")
    quote = quotes.quote(schedule, request)
    assert (quote.small, quote.standard, quote.large, quote.input_image) == (1_500, 3_000, 6_000, 500)
    assert quote.hold_micros == 2 * 6_000 + 2 * 500  # every image at the dearest class, plus the inputs
    assert quote.charge_for([512 * 512, 1536 * 1024]) == 1_500 + 6_000 + 1_000
    assert quote.charge_for([]) == 0  # nothing returned: nothing charged, inputs included
    for quality, unit in (("low", 1_000), ("medium", 2_000), ("standard", 2_000), ("hd", 3_000), ("auto", 2_000), (None, 2_000)):
        request.quality = quality
        assert quotes.quote(schedule, request).standard == unit, quality
    request.quality = "ultra"
    with pytest.raises(FlashbulbError, match="quality"):
        quotes.quote(schedule, request)
    request.quality = "high"
    discounted = quotes.quote(schedule, request, discount_percent=50)
    assert (discounted.small, discounted.standard, discounted.large, discounted.input_image) == (750, 1_500, 3_000, 250)


def test_live_charges_follow_the_schedule_quality_and_inputs_and_the_catalog_shows_it(billing):
    key = billing.create_key("1")
    # Gemini: no quality; a 16 px photo upscaled 2x is a small image: 0.001 + one input image 0.0005.
    response = billing.generate(key, small_body())
    assert response.status_code == 200, response.text
    fields = response.json()["flashbulb"]
    assert fields["charge_micros"] == 1_500
    assert fields["price_micros"]["output_images"] == [{"size_class": "small", "micros": 1_000}]
    assert fields["price_micros"]["input_images"] == {"count": 1, "unit_micros": 500, "micros": 500}
    # OpenAI, quality=high: 150% of the small price, plus the input image.
    client = openai.OpenAI(api_key=key, base_url=f"{billing.base_url}/v1", max_retries=0, timeout=120)
    upload = ("photo.png", io.BytesIO(png_bytes(astronaut(16))), "image/png")
    raw = client.images.with_raw_response.edit(image=upload, prompt="upscale 2x", model="flashbulb-photo", quality="high")
    body = raw.http_response.json()
    assert body["flashbulb"]["charge_micros"] == 1_500 + 500
    assert body["flashbulb"]["price_micros"]["unit_micros"] == {
        "small": 1_500,
        "standard": 3_000,
        "large": 6_000,
        "input_image": 500,
    }
    assert base64.b64decode(body["data"][0]["b64_json"])[:4] == b"\x89PNG"
    account = own(billing, key, "GET", "/account").json()
    assert account["balance_micros"] == 1_000_000 - 1_500 - 2_000 and account["held_micros"] == 0
    # The catalog: the Gemini models list, the OpenAI models list, the CLI.
    model = http.get(f"{billing.base_url}/v1beta/models/flashbulb-photo", headers={"x-goog-api-key": key}).json()
    schedule = model["flashbulb"]["prices"]
    assert schedule["image_micros"] == {"small": 1_000, "standard": 2_000, "large": 4_000}
    assert schedule["input_image_micros"] == 500 and schedule["quality_percent"] == {"low": 50, "medium": 100, "high": 150}
    assert model["flashbulb"]["price_micros_per_image"] == 2_000
    listed = json.loads(billing.cli("models", "--json").stdout)
    assert next(r for r in listed if r["name"] == "flashbulb-photo")["prices"] == schedule


def test_a_price_change_between_hold_and_settle_never_alters_the_held_charge(tmp_path):
    database = store.connect(f"sqlite:///{tmp_path / 'p.db'}")
    store.migrate(database)
    new = accounts.create_key(database, "pc", credits_micros=1_000_000)
    old_settings, new_settings = Settings(), Settings()
    old_settings.apply_toml({"prices": {"flashbulb-photo": {"image": "0.002", "input_image": "0.001"}}})
    new_settings.apply_toml({"prices": {"flashbulb-photo": {"image": "0.009", "input_image": "0.005"}}})
    request = ImageRequest(request_id="pc-1", model="flashbulb-photo", prompt="x", images=[astronaut(8)])
    quote = quotes.quote(price_book(old_settings).schedule("flashbulb-photo"), request)
    ledger.hold(
        database,
        request_id="pc-1",
        account_id=new.account_id,
        key_id=new.key_id,
        model="flashbulb-photo",
        amount_micros=quote.hold_micros,
        ttl_s=60,
        quote=quote,
    )
    # The operator raises the price while the request runs; the settlement still charges the quote.
    assert quotes.quote(price_book(new_settings).schedule("flashbulb-photo"), request).hold_micros == 14_000
    assert ledger.close_hold(database, "pc-1", 0, ledger.Usage(status="ok"), output_pixels=[32 * 32])
    with database.connect() as conn:
        assert conn.execute(select(Hold.charged_micros).where(Hold.request_id == "pc-1")).scalar() == 3_000
    assert ledger.balance(database, new.account_id) == (997_000, 0)
    database.dispose()


# ---- keys: scopes, expiry, revocation, caps ----


def test_a_scoped_key_gets_403_for_other_models(billing):
    other = billing.cli(
        "keys", "create", "--name", f"scope-{uuid.uuid4().hex[:6]}", "--credits", "1", "--models", "flux2-klein-4b,tiny-sd"
    ).stdout.strip()
    refused = billing.generate(other, small_body())
    assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "may not call flashbulb-photo" in refused.json()["error"]["message"]
    client = openai.OpenAI(api_key=other, base_url=f"{billing.base_url}/v1", max_retries=0, timeout=60)
    with pytest.raises(openai.PermissionDeniedError):
        client.images.edit(
            image=("p.png", io.BytesIO(png_bytes(astronaut(16))), "image/png"), prompt="upscale 2x", model="flashbulb-photo"
        )
    scoped = admin(
        billing,
        "POST",
        "/keys",
        json={"account": f"scope-{uuid.uuid4().hex[:6]}", "credits_usd": "1", "models": ["flashbulb-photo"]},
    ).json()["key"]
    assert billing.generate(scoped, small_body()).status_code == 200
    assert own(billing, other, "GET", "/account").json()["held_micros"] == 0  # refused before any hold


def test_an_expired_key_is_refused_and_says_it_expired(in_process):
    app = in_process
    key = app.cli("keys", "create", "--name", f"exp-{uuid.uuid4().hex[:6]}", "--credits", "1", "--expires", "60s").stdout.strip()
    assert app.client.get("/flashbulb/account", headers={"x-goog-api-key": key}).status_code == 200  # and now cached
    app.clock.advance(61)
    gemini = app.client.post("/v1beta/models/flashbulb-photo:generateContent", headers={"x-goog-api-key": key}, json=small_body())
    assert gemini.status_code == 400 and gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "expired" in gemini.json()["error"]["message"]
    assert "expired" in app.client.get("/flashbulb/account", headers={"x-goog-api-key": key}).json()["error"]["message"]
    client = openai.OpenAI(api_key=key, base_url=f"{app.client.base_url}/v1", http_client=app.client, max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client.models.list()
    bad = app.cli("keys", "create", "--name", "x", "--expires", "soon", check=False)
    assert bad.returncode != 0 and "not a duration" in bad.stderr


def test_revoked_keys_are_refused_endpoint_and_cli(billing):
    name = f"rev-{uuid.uuid4().hex[:6]}"
    first = admin(billing, "POST", "/keys", json={"account": name, "credits_usd": "1"}).json()
    second = admin(billing, "POST", "/keys", json={"account": name, "key_name": "second"}).json()
    assert billing.generate(first["key"], small_body()).status_code == 200
    revoked = admin(billing, "POST", f"/keys/{first['key_id']}/revoke")
    assert revoked.json() == {"key_id": first["key_id"], "revoked": True, "already_revoked": False}
    refused = billing.generate(first["key"], small_body())
    assert refused.status_code == 400 and "revoked" in refused.json()["error"]["message"]
    assert billing.generate(second["key"], small_body()).status_code == 200  # the account's other key still works
    assert billing.cli("keys", "revoke", str(second["key_id"])).stdout.strip() == f"key {second['key_id']}: revoked"
    assert billing.generate(second["key"], small_body()).status_code == 400
    assert "already revoked" in billing.cli("keys", "revoke", str(second["key_id"])).stdout
    assert admin(billing, "POST", "/keys/999999/revoke").status_code == 404
    listing = json.loads(billing.cli("keys", "list", "--json").stdout)
    assert [k["revoked"] for k in listing if k["account"] == name] == [True, True]


def test_a_spending_cap_holds_under_concurrency(any_db_server):
    server = any_db_server  # flat 0.002 per image: 3 images fit a 0.006 cap, on a key with plenty of credit
    name = f"cap-{uuid.uuid4().hex[:6]}"
    key = server.cli("keys", "create", "--name", name, "--credits", "5", "--cap", "0.006").stdout.strip()
    payload = small_body()
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(lambda _: server.generate(key, payload), range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 3 and set(codes) == {200, 429}, codes
    # (Some 429s may be the per-key rate limit on requests in flight; at least one is the cap.)
    messages = [r.json()["error"]["message"] for r in responses if r.status_code == 429]
    assert any("spending cap of 0.006000 USD" in m for m in messages), messages
    state = account_state(server, name)
    assert state["balance"] == 5_000_000 - 3 * 2_000 and state["held"] == 0 and state["charges"] == 3
    listing = json.loads(server.cli("keys", "list", "--json").stdout)
    assert [(k["spent_micros"], k["cap_micros"]) for k in listing if k["account"] == name] == [(6_000, 6_000)]
    # A new key of the same account has its own cap (none): the account's credit still serves it.
    other = server.cli("keys", "create", "--name", name, "--key-name", "uncapped").stdout.strip()
    assert server.generate(other, payload).status_code == 200


# ---- credits: codes, refunds ----


def test_a_code_redeemed_concurrently_credits_exactly_once(any_db_server):
    server = any_db_server
    code = admin(server, "POST", "/codes", json={"usd": "2.5", "note": "promo"}).json()["code"]
    names = [f"code-{uuid.uuid4().hex[:6]}" for _ in range(8)]
    keys = [server.create_key("0", name=n) for n in names]
    barrier = threading.Barrier(len(keys))

    def redeem(key: str) -> httpx.Response:
        barrier.wait()
        return own(server, key, "POST", "/account/redeem", json={"code": code})

    with ThreadPoolExecutor(len(keys)) as pool:
        responses = list(pool.map(redeem, keys))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 7, codes
    assert sum(account_state(server, n)["balance"] for n in names) == 2_500_000
    winner = names[[r.status_code for r in responses].index(200)]
    assert [amount for amount, _ in entries(server, winner, "redeem")] == [2_500_000]
    assert "already been redeemed" in next(r for r in responses if r.status_code == 409).json()["error"]["message"]
    # Expiry, an unknown code, and codes from the CLI.
    assert own(server, keys[0], "POST", "/account/redeem", json={"code": "fbc-nope"}).status_code == 404
    printed = server.cli("codes", "create", "0.25", "--count", "2", "--expires", "30d").stdout.split()
    assert len(printed) == 2 and all(c.startswith("fbc-") for c in printed)
    assert own(server, keys[1], "POST", "/account/redeem", json={"code": printed[0]}).json()["amount_micros"] == 250_000


def test_a_code_past_its_expiry_is_refused_and_credits_nothing(in_process):
    app = in_process
    admin_key = {"x-goog-api-key": app.admin_key}
    code = app.client.post("/admin/codes", headers=admin_key, json={"usd": "1", "expires": "1h"}).json()["code"]
    key = {"x-goog-api-key": app.create_key("0")}
    app.clock.advance(3601)
    expired = app.client.post("/flashbulb/account/redeem", headers=key, json={"code": code})
    assert expired.status_code == 400 and "expired" in expired.json()["error"]["message"]
    assert app.client.get("/flashbulb/account", headers=key).json()["balance_micros"] == 0


def test_a_refund_is_paid_once_and_never_more_than_the_charge(billing):
    name = f"refund-{uuid.uuid4().hex[:6]}"
    key = billing.create_key("1", name=name)
    ids = [billing.generate(key, small_body()).json()["flashbulb"]["request_id"] for _ in range(2)]  # 1_500 each
    too_much = admin(billing, "POST", "/refunds", json={"request_id": ids[0], "usd": "0.0016"})
    assert too_much.status_code == 400 and "more than" in too_much.json()["error"]["message"]
    part = admin(billing, "POST", "/refunds", json={"request_id": ids[0], "usd": "0.001", "note": "blurry"})
    assert part.status_code == 200 and part.json()["refunded_micros"] == 1_000
    again = admin(billing, "POST", "/refunds", json={"request_id": ids[0], "usd": "0.0001"})
    assert again.status_code == 409 and "already refunded" in again.json()["error"]["message"]
    assert billing.cli("credits", "refund", ids[1]).stdout.strip() == f"{ids[1]}: refunded 0.001500 of 0.001500 USD"
    assert billing.cli("credits", "refund", ids[1], check=False).returncode != 0
    assert admin(billing, "POST", "/refunds", json={"request_id": "nope"}).status_code == 404
    state = account_state(billing, name)
    assert state["balance"] == 1_000_000 - 3_000 + 2_500 == state["ledger_sum"]
    assert sorted(entries(billing, name, "refund")) == sorted([(1_000, ids[0]), (1_500, ids[1])])
    # Concurrent refunds of one request: exactly one is paid.
    rid = billing.generate(key, small_body()).json()["flashbulb"]["request_id"]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: admin(billing, "POST", "/refunds", json={"request_id": rid}).status_code, range(6)))
    assert sorted(answers) == [200] + [409] * 5


def test_the_statement_accounts_for_every_cent_with_running_balances(billing):
    referrer = f"stmt-{uuid.uuid4().hex[:6]}"
    key = billing.create_key("1", name=referrer)  # a grant
    code = admin(billing, "POST", "/codes", json={"usd": "0.5"}).json()["code"]
    assert own(billing, key, "POST", "/account/redeem", json={"code": code}).status_code == 200
    ids = [billing.generate(key, small_body()).json()["flashbulb"]["request_id"] for _ in range(2)]  # 1_500 each
    admin(billing, "POST", "/refunds", json={"request_id": ids[0], "usd": "0.0005", "note": "soft focus"})
    referral = own(billing, key, "GET", "/account/referral").json()["referral_code"]
    customer = billing.cli(
        "keys", "create", "--name", f"c-{referrer}", "--credits", "1", "--referred-by", referral
    ).stdout.strip()
    earned = billing.generate(customer, small_body()).json()["flashbulb"]["request_id"]

    whole = own(billing, key, "GET", "/account/ledger").json()
    kinds = [(e["kind"], e["amount_micros"], e["request_id"]) for e in whole["entries"]]
    assert kinds == [
        ("commission", 150, earned),
        ("refund", 500, ids[0]),
        ("charge", -1_500, ids[1]),
        ("charge", -1_500, ids[0]),
        ("redeem", 500_000, kinds[4][2]),
        ("grant", 1_000_000, None),
    ]
    assert whole["entries"][1]["note"] == "soft focus"
    # Each balance is the one before it plus the entry; the newest is the account's balance.
    after = [e["balance_after_micros"] for e in whole["entries"]]
    assert after[0] == whole["balance_micros"] == 1_500_000 - 3_000 + 500 + 150
    assert all(after[i] - whole["entries"][i]["amount_micros"] == after[i + 1] for i in range(len(after) - 1))
    # Paged two at a time it is the same list; the operator and the CLI see the same entries.
    paged, token = [], ""
    while True:
        page = own(billing, key, "GET", f"/account/ledger?limit=2{'&page_token=' + token if token else ''}").json()
        paged += page["entries"]
        if not (token := page.get("next_page_token", "")):
            break
    assert paged == whole["entries"]
    assert admin(billing, "GET", f"/ledger?account={referrer}").json()["entries"] == whole["entries"]
    assert json.loads(billing.cli("credits", "history", referrer, "--json").stdout) == whole["entries"]
    # Bad paging is a clear 400; another account's ledger is for admins only.
    assert own(billing, key, "GET", "/account/ledger?page_token=abc").status_code == 400
    # flashbulb's own JSON is snake_case: the camelCase name is refused, not ignored (a paging loop would never end).
    camel = own(billing, key, "GET", "/account/ledger?limit=2&pageToken=x")
    assert camel.status_code == 400 and "page_token" in camel.json()["error"]["message"]
    assert own(billing, key, "GET", "/account/ledger?limit=0").json()["error"]["status"] == "INVALID_ARGUMENT"
    assert http.get(f"{billing.base_url}/admin/ledger?account={referrer}", headers={"x-goog-api-key": key}).status_code == 403
    assert admin(billing, "GET", "/ledger?account=nobody-here").status_code == 404


def test_absurd_amounts_durations_pages_and_dates_get_a_clear_400_never_a_500(billing):
    key = billing.create_key("1")
    bad = [
        ("POST", "/admin/credits", {"json": {"account": "admin", "usd": "Infinity"}}),
        ("POST", "/admin/credits", {"json": {"account": "admin", "usd": "1e30"}}),
        ("POST", "/admin/credits", {"json": {"account": "admin", "usd": "NaN"}}),
        ("POST", "/admin/codes", {"json": {"usd": "-Infinity"}}),
        ("POST", "/admin/codes", {"json": {"usd": "1", "expires": "99999999d"}}),
        ("POST", "/admin/keys", {"json": {"account": "x", "expires": "999999999999999d"}}),
        ("POST", "/admin/keys", {"json": {"account": "x", "cap_usd": "1e30"}}),
        ("POST", "/admin/refunds", {"json": {"request_id": "r", "usd": "1e30"}}),
        ("GET", "/admin/usage?limit=-5", {}),
        ("GET", "/admin/usage?limit=99999999999999999999", {}),
        ("GET", "/flashbulb/account/usage?page_token=%C2%B2", {}),
        ("GET", "/flashbulb/account/ledger?page_token=99999999999999999999", {}),
    ]
    for method, path, kwargs in bad:
        answer = http.request(
            method, billing.base_url + path, headers={"x-goog-api-key": billing.admin_key}, timeout=30, **kwargs
        )
        assert answer.status_code in (400, 422) and answer.json()["error"]["status"] == "INVALID_ARGUMENT", (
            path,
            kwargs,
            answer.text,
        )
    assert admin(billing, "POST", "/keys/99999999999999999999/revoke").status_code == 404
    # Days beyond what a date can hold are clamped: the answer is just empty.
    for query in ("from=9999-12-30&to=9999-12-31", "from=0001-01-01&to=0001-01-02", "to=0001-01-01&days=30"):
        assert own(billing, key, "GET", f"/account/usage/summary?{query}").status_code == 200, query
        assert admin(billing, "GET", f"/usage/summary?{query}").status_code == 200, query
    # A key request that fails leaves no account (and no admin account, and no key) behind.
    for body in ({"account": "dave-x", "credits_usd": "-5", "admin": True}, {"account": "erin-x", "referred_by": "ref-bogus"}):
        assert admin(billing, "POST", "/keys", json=body).status_code in (400, 404)
    assert {"dave-x", "erin-x"}.isdisjoint(k["account"] for k in admin(billing, "GET", "/keys").json()["keys"])


# ---- referrals ----


def test_two_accounts_naming_each_other_at_once_never_make_a_referral_cycle(any_db_server):
    server = any_db_server
    for _ in range(12):
        keys = [server.create_key("0") for _ in range(2)]
        codes = [own(server, k, "GET", "/account/referral").json()["referral_code"] for k in keys]
        barrier = threading.Barrier(2)

        def redeem(mine: int) -> int:
            barrier.wait()
            return own(server, keys[mine], "POST", "/account/redeem", json={"code": codes[1 - mine]}).status_code

        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(redeem, (0, 1))) == [200, 400]


def test_referral_commission_is_paid_once_per_settled_charge_and_clawed_back_on_refund(billing):
    referrer = f"ref-{uuid.uuid4().hex[:6]}"
    referrer_key = billing.create_key("0", name=referrer)
    code = own(billing, referrer_key, "GET", "/account/referral").json()["referral_code"]
    assert code.startswith("ref-")
    customer = f"cust-{uuid.uuid4().hex[:6]}"
    key = billing.cli("keys", "create", "--name", customer, "--credits", "1", "--referred-by", code).stdout.strip()
    assert own(billing, key, "GET", "/account/referral").json()["commission_percent"] == 10
    ids = [billing.generate(key, small_body()).json()["flashbulb"]["request_id"] for _ in range(3)]  # 1_500 each
    paid = entries(billing, referrer, "commission")
    assert sorted(paid) == sorted((150, rid) for rid in ids)  # 10% of each settled charge, once each
    assert admin(billing, "POST", "/refunds", json={"request_id": ids[0]}).json()["clawed_back_micros"] == 150
    assert admin(billing, "POST", "/refunds", json={"request_id": ids[1], "usd": "0.0005"}).json()["clawed_back_micros"] == 50
    assert sorted(entries(billing, referrer, "clawback")) == sorted([(-150, ids[0]), (-50, ids[1])])
    assert account_state(billing, referrer)["balance"] == 450 - 200 == account_state(billing, referrer)["ledger_sum"]
    # A customer redeems a referral code once; never its own, never twice.
    late = f"late-{uuid.uuid4().hex[:6]}"
    late_key = billing.create_key("1", name=late)
    own_code = own(billing, late_key, "GET", "/account/referral").json()["referral_code"]
    assert own(billing, late_key, "POST", "/account/redeem", json={"code": own_code}).status_code == 400
    done = own(billing, late_key, "POST", "/account/redeem", json={"code": code})
    assert done.json() == {"account": late, "redeemed": "referral", "referrer": referrer}
    assert own(billing, late_key, "POST", "/account/redeem", json={"code": code}).status_code == 409
    # ... and a referrer can't then be referred by the account it referred (no cycles).
    assert own(billing, referrer_key, "POST", "/account/redeem", json={"code": own_code}).status_code == 400
    rid = billing.generate(late_key, small_body()).json()["flashbulb"]["request_id"]
    assert (150, rid) in entries(billing, referrer, "commission")


def test_a_refund_claws_back_only_what_the_referrer_still_has(tmp_path):
    database = store.connect(f"sqlite:///{tmp_path / 'c.db'}")
    store.migrate(database)
    referrer = accounts.create_key(database, "r")
    with database.connect() as conn:
        code = conn.execute(select(Account.referral_code).where(Account.id == referrer.account_id)).scalar()
    customer = accounts.create_key(database, "c", credits_micros=100_000, referred_by=code, referral_percent=20)
    ledger.hold(
        database,
        request_id="x1",
        account_id=customer.account_id,
        key_id=customer.key_id,
        model="m",
        amount_micros=10_000,
        ttl_s=60,
    )
    ledger.close_hold(database, "x1", 10_000, ledger.Usage(status="ok"))
    assert ledger.balance(database, referrer.account_id) == (2_000, 0)
    ledger.grant(database, "r", -1_500)  # the referrer spent most of it
    assert ledger.refund(database, "x1").clawed_back_micros == 500  # never below zero
    assert ledger.balance(database, referrer.account_id) == (0, 0)
    with pytest.raises(FlashbulbError, match="already refunded"):
        ledger.refund(database, "x1")
    database.dispose()


# ---- a crash with holds outstanding ----


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_crash_with_several_holds_outstanding_releases_them_and_changes_nothing_else(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'flashbulb.db'}" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    config = "[limits]\nhold_ttl_s = 3\nhold_sweep_interval_s = 0.5\n"
    server = start_server(tmp_path, url, config)
    names = [f"crash-{i}-{uuid.uuid4().hex[:4]}" for i in range(3)]
    try:
        keys = [server.create_key("1", name=n) for n in names]
        assert server.generate(keys[0], small_body()).status_code == 200  # one settled charge to keep
        before = {n: account_state(server, n) for n in names}
        slow = gemini_body(png_bytes(astronaut(256)), "restore")
        for key in keys:
            threading.Thread(target=lambda k=key: _swallow(lambda: server.generate(k, slow)), daemon=True).start()
        wait_for(lambda: sum(account_state(server, n)["open_holds"] for n in names) == 3, what="three holds")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        assert all(account_state(server, n)["held"] > 0 for n in names)
    finally:
        server.stop()
    database = store.connect(url)
    with database.connect() as conn:
        ledger_before = conn.execute(
            select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount_micros, LedgerEntry.kind).order_by(LedgerEntry.id)
        ).all()
    restarted = start_server(tmp_path, url, config, admin_key=server.admin_key)
    try:
        wait_for(
            lambda: all(account_state(restarted, n)["open_holds"] == 0 for n in names), what="the expired holds to be released"
        )
        for n in names:
            state = account_state(restarted, n)
            assert (state["balance"], state["held"], state["charges"], state["ledger_sum"]) == (
                before[n]["balance"],
                0,
                before[n]["charges"],
                before[n]["balance"],
            )
            assert sorted(u[0] for u in state["usage"]) == sorted([u[0] for u in before[n]["usage"]] + ["expired"])
        with database.connect() as conn:
            ledger_after = conn.execute(
                select(LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.amount_micros, LedgerEntry.kind).order_by(
                    LedgerEntry.id
                )
            ).all()
            key_held = conn.execute(select(func.coalesce(func.sum(Hold.amount_micros), 0)).where(Hold.state == "held")).scalar()
        assert ledger_after == ledger_before and key_held == 0  # releasing wrote no ledger entry
        listing = json.loads(restarted.cli("keys", "list", "--json").stdout)
        assert all(k["spent_micros"] >= 0 for k in listing)
    finally:
        restarted.stop()
        database.dispose()


# ---- the migration ----


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0003_upgrades_a_database_made_at_0002(backend, tmp_path, request):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("new_postgres_database")()
    database = store.connect(url)
    config = Config()
    config.set_main_option("script_location", str(store.MIGRATIONS))
    with database.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    with database.begin() as conn:
        for name in ("a", "b"):
            conn.execute(
                text(
                    "INSERT INTO accounts (name, is_admin, balance_micros, held_micros, created_at) VALUES (:n, false, 5000, 0, CURRENT_TIMESTAMP)"
                ),
                {"n": name},
            )
        conn.execute(
            text(
                "INSERT INTO api_keys (account_id, name, prefix, key_hash, created_at) SELECT id, 'k', 'fb-x', 'h' || name, CURRENT_TIMESTAMP FROM accounts"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ledger_entries (account_id, amount_micros, kind, request_id, note, created_at) SELECT id, 5000, 'grant', NULL, '', CURRENT_TIMESTAMP FROM accounts"
            )
        )
    store.migrate(database)
    with database.connect() as conn:
        codes = conn.execute(select(Account.referral_code, Account.commission_percent, Account.referrer_id)).all()
        assert len({c.referral_code for c in codes}) == 2 and all(
            c.referral_code.startswith("ref-") and c.commission_percent == 0 and c.referrer_id is None for c in codes
        )
        assert conn.execute(text("SELECT spent_micros, held_micros, cap_micros FROM api_keys")).all() == [(0, 0, None)] * 2
    # ... and works: a quoted hold settles, a key is capped, a code redeems.
    with database.connect() as conn:
        account_id = conn.execute(select(Account.id).where(Account.name == "a")).scalar()
    quote = quotes.Quote(small=1_000, standard=1_000, large=1_000, input_image=0, images=1, inputs=0)
    ledger.hold(database, request_id="m1", account_id=account_id, key_id=1, model="m", amount_micros=1_000, ttl_s=60, quote=quote)
    assert ledger.close_hold(database, "m1", 0, ledger.Usage(status="ok"), output_pixels=[100])
    assert ledger.balance(database, account_id) == (4_000, 0)
    database.dispose()
