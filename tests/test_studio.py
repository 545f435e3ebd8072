"""The web studio at `/`: its static files and the public usage endpoints it reads (plain HTTP), then
the page itself in Debian's Chromium driven by Playwright against a live server: sign in, upload,
restore, a second turn, the usage page, bad keys, no credits, phone width, the admin view.

Screenshots go to $FLASHBULB_ARTIFACTS/screenshots (default test-artifacts/screenshots)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import os
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT, Server, astronaut, gemini_body, http, png_bytes, start_server
from PIL import Image

CHROMIUM = Path(os.environ.get("FLASHBULB_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(os.environ.get("FLASHBULB_ARTIFACTS") or ROOT / "test-artifacts") / "screenshots"
SLOW = 60_000  # ms: a model call on a busy 2-core CI machine


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    data_dir = tmp_path_factory.mktemp("studio")
    srv = start_server(data_dir, f"sqlite:///{data_dir / 'flashbulb.db'}")
    yield srv
    srv.stop()


def get(server: Server, path: str, key: str | None = None) -> httpx.Response:
    return http.get(server.base_url + path, headers={"x-goog-api-key": key} if key else {}, timeout=30)


# ---------------------------------------------------------------- plain HTTP (no browser needed)


def test_the_studio_is_served_at_root_without_shadowing_the_api(studio_server):
    page = get(studio_server, "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/studio/studio.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "script-src 'self'" in csp  # the key can only go to this server
    for name, kind in [("studio.js", "javascript"), ("api.js", "javascript"), ("studio.css", "text/css")]:
        asset = get(studio_server, f"/studio/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
    missing = get(studio_server, "/studio/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    # The API around it is untouched: JSON answers and Google-shaped errors.
    assert get(studio_server, "/v1beta/models").json()["error"]["status"] == "PERMISSION_DENIED"
    assert get(studio_server, "/healthz").json()["status"] == "ok"


def test_usage_summary_paging_and_csv(any_db_server):
    """On SQLite and PostgreSQL (per-day sums group by each one's date())."""
    server = any_db_server
    key = server.create_key("1", name="=csv-check")  # a name a spreadsheet would run as a formula
    for _ in range(3):
        assert server.generate(key, gemini_body(png_bytes(astronaut(32)), "make it brighter")).status_code == 200
    summary = get(server, "/flashbulb/account/usage/summary?days=7", key).json()
    assert [d["date"] for d in summary["days"]][-1] == dt.datetime.now(dt.UTC).date().isoformat() and len(summary["days"]) == 7
    assert summary["days"][-1] == {"date": summary["to"], "calls": 3, "images": 3, "charge_micros": 6_000}
    assert sum(d["charge_micros"] for d in summary["days"][:-1]) == 0
    assert summary["models"] == [{"model": "flashbulb-photo", "calls": 3, "images": 3, "charge_micros": 6_000}]
    assert summary["charge_micros"] == 6_000 and summary["calls"] == 3

    first = get(server, "/flashbulb/account/usage?limit=2", key).json()
    assert len(first["records"]) == 2 and first["next_page_token"]
    rest = get(server, f"/flashbulb/account/usage?limit=2&page_token={first['next_page_token']}", key).json()
    assert len(rest["records"]) == 1 and "next_page_token" not in rest
    ids = [r["request_id"] for r in first["records"] + rest["records"]]
    assert len(set(ids)) == 3

    exported = get(server, "/flashbulb/account/usage.csv", key)
    assert exported.headers["content-type"].startswith("text/csv") and "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["request_id"] for r in rows] == ids
    assert all(r["charge_usd"] == "0.002000" and r["same_person"] == "true" and r["account"] == "'=csv-check" for r in rows)

    for bad in (
        "/flashbulb/account/usage/summary?days=0",
        "/flashbulb/account/usage?limit=0",
        "/flashbulb/account/usage?page_token=x",
    ):
        assert get(server, bad, key).status_code == 400, bad
    assert get(server, "/flashbulb/account/usage/summary").status_code == 403  # no key


# ---------------------------------------------------------------- the page in a browser


@pytest.fixture(scope="module")
def browser():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "the playwright package is not installed (pip install -e '.[test]')"
    if why is None and not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
    if why:
        if os.environ.get("FLASHBULB_REQUIRE_BROWSER"):
            pytest.fail(f"browser tests are required (FLASHBULB_REQUIRE_BROWSER) but {why}")
        pytest.skip(f"browser tests skipped: {why}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, studio_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page, server: Server, key: str) -> None:
    from playwright.sync_api import expect

    page.goto(server.base_url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#view-studio")).to_be_visible()


def photo_file(tmp_path: Path, size: int, name: str = "astronaut.png") -> Path:
    path = tmp_path / name
    astronaut(size).save(path)
    return path


def balance_micros(server: Server, key: str) -> int:
    return get(server, "/flashbulb/account", key).json()["balance_micros"]


def test_restore_then_a_second_turn_then_the_usage_page(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    key = studio_server.create_key("1", name="studio-alice")
    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if ":streamGenerateContent" in r.url else None)
    sign_in(page, studio_server, key)
    expect(page.locator("#balance")).to_have_text("$1.000")
    expect(page.locator("#model")).to_have_value("flashbulb-photo")

    page.locator("#files").set_input_files(photo_file(tmp_path, 128))
    expect(page.locator("#refs img")).to_have_count(1)
    page.get_by_label("Prompt").fill("restore this old photo")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#quality")).to_contain_text("same person", timeout=SLOW)
    distance = float(re.search(r"distance (\d\.\d+)", page.locator("#quality").inner_text()).group(1))
    assert 0 <= distance < 0.6
    expect(page.locator("#quality")).to_contain_text("$0.002")
    expect(page.locator("#quality")).to_contain_text("safe")
    expect(page.locator("#quality")).to_contain_text("512 × 512")
    expect(page.locator("#status")).to_contain_text("Charged $0.002")
    shot(page, "studio-restore")

    # The before/after slider works from the keyboard.
    slider = page.get_by_label("Before and after: percent of the photo showing before")
    slider.focus()
    for _ in range(10):
        page.keyboard.press("ArrowLeft")
    expect(slider).to_have_value("40")
    assert "60%" in page.locator("#before-wrap").evaluate("e => e.style.clipPath")
    box = page.locator("#compare").bounding_box()  # with a margin, to show the focus ring around it
    clip = {"x": box["x"] - 8, "y": box["y"] - 8, "width": box["width"] + 16, "height": box["height"] + 16}
    page.screenshot(path=str(SCREENSHOTS / "slider-keyboard-focus.png"), clip=clip)

    # Turn 2 sends the conversation; the server edits the previous result.
    page.get_by_role("button", name="Continue editing").click()
    expect(page.get_by_label("Prompt")).to_be_focused()
    page.keyboard.type("make it black and white")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#history li")).to_have_count(2, timeout=SLOW)
    expect(page.locator("#result-title")).to_have_text("Result of turn 2")
    expect(slider).to_have_value("50")  # a new turn's comparison starts half and half
    expect(page.locator("#quality")).to_contain_text("same person")
    contents = sent[-1]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert any("inlineData" in p for p in contents[1]["parts"])  # the previous result
    assert contents[2]["parts"] == [{"text": "make it black and white"}]
    assert not any("inlineData" in p for p in contents[0]["parts"])  # older images are not re-sent
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PNG").click()
    result = Image.open(download.value.path())
    assert result.format == "PNG" and result.size == (512, 512)
    pixels = np.asarray(result.convert("RGB"), dtype=np.int16)
    assert np.abs(pixels - pixels.mean(axis=2, keepdims=True)).max() < 3  # black and white
    shot(page, "studio-second-turn")

    # The usage page: both charges, thumbnails of both, the balance down by their sum.
    records = get(studio_server, "/flashbulb/account/usage", key).json()["records"]
    charges = [r["charge_micros"] for r in records]
    assert charges == [2_000, 2_000]
    assert balance_micros(studio_server, key) == 1_000_000 - sum(charges)
    admin_calls: list[str] = []
    page.on("request", lambda sent: admin_calls.append(sent.url) if "/admin/" in sent.url else None)
    page.get_by_role("link", name="Usage").click()
    rows = page.locator("#calls tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator(".charge")).to_have_text(["$0.002", "$0.002"])
    expect(rows.locator("img.thumb")).to_have_count(2)
    expect(page.locator("#u-balance")).to_have_text("$0.996")
    expect(page.locator("#u-spent")).to_have_text("$0.004")
    expect(page.locator("#balance")).to_have_text("$0.996")
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert float(page.locator(f'#chart-days rect[data-date="{today}"]').get_attribute("height")) > 50
    expect(page.locator('#chart-models rect[data-model="flashbulb-photo"]')).to_have_count(1)
    expect(page.locator("#admin")).to_be_hidden()
    assert not admin_calls, admin_calls  # a customer's page never asks /admin (it logged two 403s)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["request_id"] for r in exported] == [r["request_id"] for r in records]
    shot(page, "usage")


def test_drop_and_paste_add_reference_photos_up_to_three(page, studio_server):
    from playwright.sync_api import expect

    sign_in(page, studio_server, studio_server.create_key("1"))
    data = base64.b64encode(png_bytes(astronaut(48))).decode()
    give = """([data, name, how]) => {
        const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: "image/png" }));
        if (how === "drop") {
            document.querySelector("#dropzone").dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        } else {
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        }
    }"""
    page.evaluate(give, [data, "dropped.png", "drop"])
    expect(page.locator("#refs img")).to_have_count(1)
    page.evaluate(give, [data, "pasted.png", "paste"])
    expect(page.locator("#refs img")).to_have_count(2)
    expect(page.get_by_role("img", name="Photo 2: pasted.png")).to_be_visible()
    page.evaluate(give, [data, "third.png", "paste"])
    page.evaluate(give, [data, "fourth.png", "paste"])
    expect(page.locator("#refs img")).to_have_count(3)
    expect(page.locator("#run-error")).to_contain_text("Up to 3 photos")
    page.get_by_role("button", name="Remove photo 1 (dropped.png)").click()
    expect(page.locator("#refs img")).to_have_count(2)


def test_a_bad_key_and_an_empty_account_get_clear_messages(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    page.goto(studio_server.base_url + "/")
    page.get_by_label("API key").fill("fb-not-a-real-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="isn't valid")).to_be_visible()
    expect(page.locator("#view-studio")).to_be_hidden()
    shot(page, "bad-key")

    broke = studio_server.create_key("0")
    page.get_by_label("API key").fill(broke)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#balance")).to_have_text("$0.000")
    page.locator("#files").set_input_files(photo_file(tmp_path, 32))
    page.get_by_label("Prompt").fill("make it brighter")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#run-error")).to_contain_text("out of credits")
    expect(page.locator("#run-error")).to_contain_text("Nothing was charged")
    assert balance_micros(studio_server, broke) == 0
    shot(page, "out-of-credits")

    # A code from the operator tops the account up from the usage page; the history shows it.
    code = http.post(
        f"{studio_server.base_url}/admin/codes", json={"usd": "1"}, headers={"x-goog-api-key": studio_server.admin_key}
    ).json()["code"]
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#ledger tbody")).to_contain_text("No credits yet")
    page.get_by_label("Redeem a code").fill("fbc-not-a-code")
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem-result")).to_contain_text("no such code")
    page.get_by_label("Redeem a code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem-result")).to_have_text("Added $1.000. Your balance is $1.000.")
    expect(page.locator("#balance")).to_have_text("$1.000")
    entries = page.locator("#ledger tbody tr")
    expect(entries).to_have_count(1)
    expect(entries.locator(".amount")).to_have_text(["+$1.000"])
    expect(entries.locator(".after")).to_have_text(["$1.000"])
    expect(page.locator("#referral-code")).to_have_text(re.compile(r"^ref-"))
    page.get_by_role("link", name="Studio").click()
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#run-error")).to_be_hidden()
    expect(page.locator("#balance")).to_have_text("$0.998", timeout=60_000)
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#ledger tbody tr .after")).to_have_text(["$0.998", "$1.000"])
    expect(page.locator("#ledger tbody tr .amount")).to_have_text(["−$0.002", "+$1.000"])
    shot(page, "balance-history")


def test_phone_width_in_the_dark_has_no_horizontal_scroll(browser, studio_server, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(  # a phone, in the dark colour scheme (the desktop tests use the light one)
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True, color_scheme="dark"
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        key = studio_server.create_key("1", name="a-rather-long-account-name-on-a-phone")
        sign_in(page, studio_server, key)

        def fits(name: str) -> None:
            width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            shot(page, f"phone-{name}")
            assert width[0] <= width[1], f"{name}: the page is {width[0]} px wide in a {width[1]} px window"

        fits("signed-in")
        page.locator("#files").set_input_files(photo_file(tmp_path, 64))
        page.get_by_label("Prompt").fill("make it black and white")
        page.get_by_role("button", name="Edit", exact=True).click()
        expect(page.locator("#quality")).to_contain_text("same person", timeout=SLOW)
        fits("studio-result")
        page.get_by_role("link", name="Models").click()
        expect(page.locator("#catalog li.model-card").first).to_be_visible()
        fits("models")
        page.get_by_role("link", name="Usage").click()
        expect(page.locator("#calls tbody tr")).to_have_count(1)
        fits("usage")
    finally:
        context.close()


def test_the_model_catalog_shows_prices_installed_and_licences(page, studio_server):
    from playwright.sync_api import expect

    sign_in(page, studio_server, studio_server.create_key("1"))
    page.get_by_role("link", name="Models").click()
    photo = page.locator("li.model-card", has=page.get_by_role("heading", name="flashbulb-photo"))
    expect(photo).to_contain_text("installed")
    expect(photo).to_contain_text("$0.002 per image")
    expect(photo).to_contain_text("restore")
    klein = page.locator("li.model-card", has=page.get_by_role("heading", name="flux2-klein-4b"))
    expect(klein).to_contain_text("not installed")
    expect(klein).to_contain_text("Apache-2.0")
    expect(klein).to_contain_text("its operator can install it")  # a customer sees no paths or commands
    expect(klein).not_to_contain_text("flashbulb pull")
    first = page.locator("li.model-card h2").first
    expect(first).to_have_text("flashbulb-photo")  # what this server runs comes first
    # Aliases are names on their model's card, not cards of their own.
    expect(page.locator("li.model-card h2", has_text="gpt-image-1")).to_have_count(0)
    expect(photo.locator("code").get_by_text("gemini-2.5-flash-image", exact=True)).to_have_count(1)
    kontext = page.locator("li.model-card", has=page.get_by_role("heading", name="flux1-kontext-dev"))
    expect(kontext).to_contain_text("not for commercial use")
    shot(page, "models")
    photo.get_by_role("button", name="Use flashbulb-photo").click()
    expect(page.locator("#view-studio")).to_be_visible()
    expect(page.get_by_label("Prompt")).to_be_focused()
    # The operator (an admin key) sees how to install each model, the command as code.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, studio_server, studio_server.admin_key)
    page.get_by_role("link", name="Models").click()
    klein = page.locator("li.model-card", has=page.get_by_role("heading", name="flux2-klein-4b"))
    expect(klein.locator("p.hint code")).to_have_text("flashbulb pull flux2-klein-4b")
    shot(page, "models-operator")


def test_an_admin_key_sees_accounts_and_can_create_keys(page, studio_server):
    from playwright.sync_api import expect

    studio_server.create_key("2", name="studio-bob")
    sign_in(page, studio_server, studio_server.admin_key)
    page.get_by_role("link", name="Usage").click()
    admin = page.locator("#admin")
    expect(admin).to_be_visible()
    expect(admin.locator("#keys")).to_contain_text("studio-bob")
    expect(admin.locator("#keys")).to_contain_text("$2.000")
    page.get_by_label("Account name").fill("studio-carol")
    page.get_by_label("Credits (USD)").fill("3")
    page.get_by_role("button", name="Create key").click()
    new_key = page.get_by_label("New key for studio-carol").input_value()
    assert new_key.startswith("fb-") and balance_micros(studio_server, new_key) == 3_000_000
    expect(admin.locator("#keys")).to_contain_text("studio-carol")
    page.get_by_label("Account to credit").fill("studio-bob")
    page.get_by_label("USD (negative removes)").fill("1.5")
    page.get_by_role("button", name="Add credits").click()
    expect(page.locator("#ac-result")).to_have_text("studio-bob now has $3.500.")
    shot(page, "admin")


def test_cancel_stops_the_call_and_charges_nothing(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    key = studio_server.create_key("1")
    sign_in(page, studio_server, key)
    page.locator("#files").set_input_files(photo_file(tmp_path, 512, "big.png"))
    page.get_by_label("Prompt").fill("restore this old photo, upscale 4x")
    page.get_by_role("button", name="Edit", exact=True).click()
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()
    expect(page.locator("#elapsed")).not_to_have_text("0.0 s")
    shot(page, "working")
    cancel.click()
    expect(page.locator("#run-error")).to_contain_text("Cancelled. Nothing was charged.")
    expect(cancel).to_be_hidden()
    deadline = time.monotonic() + 15
    while (account := get(studio_server, "/flashbulb/account", key).json())["held_micros"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the server releases the hold as it notices the disconnect
    assert account["balance_micros"] == 1_000_000 and account["held_micros"] == 0
    [record] = get(studio_server, "/flashbulb/account/usage", key).json()["records"]
    assert record["status"] == "cancelled" and record["charge_micros"] == 0


def test_a_result_shows_its_content_credentials_and_the_verify_page_traces_it(page, studio_server, tmp_path):
    from playwright.sync_api import expect
    from skimage import data

    key = studio_server.create_key("1")
    sign_in(page, studio_server, key)
    page.locator("#files").set_input_files(photo_file(tmp_path, 256))
    page.get_by_label("Prompt").fill("make it brighter")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#quality")).to_contain_text("signed C2PA manifest", timeout=SLOW)
    expect(page.locator("#quality")).to_contain_text("invisible watermark (PSNR")
    request_id = page.locator("#quality code").inner_text()
    page.get_by_role("button", name="Check provenance").click()
    expect(page.locator("#view-verify")).to_be_visible()
    card = page.locator("#verify-results li").first
    expect(card).to_contain_text("made by flashbulb: flashbulb-photo", timeout=SLOW)
    expect(card).to_contain_text(f"request {request_id}")
    expect(card).to_contain_text("valid, signed by a key this server trusts")  # its own CA
    expect(card).to_contain_text("opened → edited (adjust) → watermarked")
    # A photo flashbulb didn't make, chosen from disk: nothing claimed.
    plain = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(plain, quality=90)
    page.locator("#verify-files").set_input_files(plain)
    expect(page.locator("#verify-results li").first).to_contain_text("coffee.jpg")
    expect(page.locator("#verify-results li").first).to_contain_text("not found", timeout=SLOW)
    expect(page.locator("#verify-results li").first).to_contain_text("none: never signed")
    shot(page, "verify")


def test_examples_show_what_a_model_does_and_one_click_fills_the_prompt(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    sign_in(page, studio_server, studio_server.create_key("1"))
    examples = page.get_by_role("list", name="Examples to try")
    expect(examples.get_by_role("button")).to_have_count(10)
    for kind in (
        "restore this old photo",
        "give it a white studio background",
        "rembrandt lighting",
        "professional LinkedIn headshot",
    ):
        expect(examples.get_by_role("button", name=kind)).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Images")).to_be_disabled()  # flashbulb-photo makes one image a call
    page.locator("#files").set_input_files(photo_file(tmp_path, 128))
    examples.get_by_role("button", name="make it black and white").click()
    expect(page.get_by_label("Prompt")).to_have_value("make it black and white")
    expect(page.get_by_label("Prompt")).to_be_focused()
    shot(page, "studio-examples")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Charged $0.002", timeout=SLOW)


def test_a_model_that_makes_no_image_says_why_calmly_and_charges_nothing(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    sign_in(page, studio_server, studio_server.create_key("1"))
    page.locator("#files").set_input_files(photo_file(tmp_path, 128))
    page.get_by_label("Prompt").fill("put me on the moon")
    page.get_by_role("button", name="Edit", exact=True).click()
    refusal = page.locator("#refusal")
    expect(refusal.locator("strong")).to_have_text("The model made no image.", timeout=SLOW)
    expect(refusal.locator("> p")).to_contain_text("flux2-klein-4b")  # what can do it
    assert refusal.inner_text().lower().count("charged") == 1, refusal.inner_text()  # said once
    refusal.get_by_text("What it understands").click()  # the model's vocabulary, folded away
    expect(refusal.locator("details p")).to_contain_text("rembrandt", ignore_case=True)
    expect(page.locator("#run-error")).to_be_hidden()  # not an error of the user's
    expect(page.locator("#balance")).to_have_text("$1.000")
    shot(page, "studio-no-image")


def test_the_next_turn_says_what_it_edits_and_can_branch_or_start_from_the_original(page, studio_server, tmp_path):
    from playwright.sync_api import expect

    sent: list[dict] = []
    page.on("request", lambda r: sent.append(r.post_data_json) if ":streamGenerateContent" in r.url else None)
    sign_in(page, studio_server, studio_server.create_key("1"))
    page.locator("#files").set_input_files(photo_file(tmp_path, 96))
    expect(page.locator("#continuing-text")).to_be_hidden()
    for prompt in ("make it brighter", "make it black and white"):
        page.get_by_label("Prompt").fill(prompt)
        page.get_by_role("button", name="Edit", exact=True).click()
        expect(page.locator("#history li")).to_have_count(1 if prompt == "make it brighter" else 2, timeout=SLOW)
    expect(page.locator("#continuing-text")).to_have_text("Turn 3 edits the result of turn 2.")

    # Branch: show turn 1, edit its result; the call carries turn 1's conversation, not turn 2's.
    page.locator("#history li").first.get_by_role("button").click()
    expect(page.get_by_role("button", name="Edit this result")).to_be_visible()
    page.get_by_role("button", name="Edit this result").click()
    expect(page.locator("#continuing-text")).to_have_text("Turn 3 edits the result of turn 1.")
    page.get_by_label("Prompt").fill("more contrast")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#history li")).to_have_count(3, timeout=SLOW)
    contents = sent[-1]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"][-1] == {"text": "make it brighter"} and contents[2]["parts"] == [{"text": "more contrast"}]
    expect(page.locator("#history li").nth(2)).to_contain_text("from turn 1")

    # Start again from the original photo: it is back among the photos, and nothing earlier is sent.
    page.get_by_role("button", name="Start from the original").click()
    expect(page.locator("#refs img")).to_have_count(1)
    expect(page.locator("#continuing-text")).to_have_text("Turn 4 starts afresh from the photos above.")
    expect(page.get_by_role("button", name="Edit this result")).to_be_visible()  # turn 3 is no longer what is edited
    shot(page, "studio-turns")
    page.get_by_label("Prompt").fill("make it warmer")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#history li")).to_have_count(4, timeout=SLOW)
    [only] = sent[-1]["contents"]
    assert any("inlineData" in p for p in only["parts"]) and only["parts"][-1] == {"text": "make it warmer"}
    expect(page.locator("#history li").nth(3)).to_contain_text("from the original")


def test_progress_shows_the_models_own_steps_and_a_reshaped_result_stands_beside_its_photo(page, studio_server, tmp_path):
    """The bar shows the fractions the server streams (here each of four stages as it ends), not only
    elapsed time. A 16:9 result of a square photo is not wiped across with a slider
    (one of the two would be letterboxed): both stand whole, side by side, and the change is said."""
    from playwright.sync_api import expect

    sign_in(page, studio_server, studio_server.create_key("1"))
    page.locator("#files").set_input_files(photo_file(tmp_path, 160))
    # A slow stage second (restore) holds the bar at 25% a while: four quick stages ended within one
    # network read on a busy box, and the bar went straight to "Checking the result…".
    page.get_by_label("Prompt").fill("make it brighter, then restore it, then make it warmer, then black and white")
    page.locator("#aspect").select_option("16:9")
    page.evaluate(
        """() => {
        window.progressSeen = [];
        const text = document.querySelector('#progress-text');
        new MutationObserver(() => window.progressSeen.push(text.textContent))
          .observe(text, { childList: true, characterData: true, subtree: true });
      }"""
    )
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", re.compile(r"^\d+$"), timeout=SLOW)
    page.locator("#view-studio form").screenshot(path=str(SCREENSHOTS / "studio-progress.png"))
    expect(page.locator("#history li")).to_have_count(1, timeout=SLOW)
    percents = [int(m.group(1)) for t in page.evaluate("window.progressSeen") if (m := re.fullmatch(r"(\d+)%", t))]
    # Stages as they end (then "Checking the result…"); two that arrive in one read show as the later.
    assert percents and set(percents) <= {25, 50, 75} and percents == sorted(percents), percents

    compare = page.locator("#compare")
    expect(compare).to_have_class(re.compile(r"\bside-by-side\b"))
    expect(page.locator("#shape-note")).to_contain_text("The shape changed (160×160 →")
    expect(page.locator("#compare-range")).to_be_hidden()
    before, after = page.locator("#before-img").bounding_box(), page.locator("#after-img").bounding_box()
    assert abs(before["height"] - after["height"]) < 2 and before["x"] + before["width"] <= after["x"]  # one height, side by side
    assert after["width"] / after["height"] == pytest.approx(16 / 9, rel=0.03)  # the result whole, not letterboxed
    assert before["width"] / before["height"] == pytest.approx(1, rel=0.03)
    shot(page, "studio-reshaped")

    # A same-shape edit next: back to one frame and the slider.
    page.locator("#aspect").select_option("")
    page.get_by_label("Prompt").fill("make it warmer")
    page.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#history li")).to_have_count(2, timeout=SLOW)
    expect(compare).not_to_have_class(re.compile(r"\bside-by-side\b"))
    expect(page.locator("#compare-range")).to_be_visible()
    expect(page.locator("#shape-note")).to_be_hidden()
