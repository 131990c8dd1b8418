"""The committed report page in a real browser: every figure and table renders, nothing fails."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
TILE_HEIGHT = 8_000  # pixels of page in one screenshot


def open_page(browser, path: Path, problems: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(path.as_uri(), wait_until="load")
    return page


def save_in_tiles(page, stem: Path, tile: int = TILE_HEIGHT) -> list[Path]:
    """The whole page as PNGs `tile` pixels tall, top to bottom.

    One full-page shot of the report is over 100,000 pixels tall: 21 MB of PNG that took 11 s
    to encode on an idle machine and ran past playwright's 30 s under the test suite's load
    (CI of 62731ef). Tiles stay viewable and each is one short call."""
    width, height = page.evaluate("[document.documentElement.scrollWidth, "
                                  "document.documentElement.scrollHeight]")
    paths = []
    for i, top in enumerate(range(0, height, tile)):
        path = stem.with_name(f"{stem.name}-{i + 1:02d}.png")
        page.screenshot(path=path, full_page=True, timeout=120_000,
                        clip={"x": 0, "y": top, "width": width, "height": min(tile, height - top)})
        paths.append(path)
    return paths


def test_report_renders_every_figure_and_table(browser, screenshots):
    problems: list[str] = []
    page = open_page(browser, REPORTS / "index.html", problems)
    # as a reader does: open every collapsed section and scroll to each (lazy) picture
    page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
    for img in page.locator("img").all():
        img.scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(img => img.complete)", timeout=30_000)
    images = page.evaluate("""[...document.images].map(img => ({
        src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth,
        shown: img.getBoundingClientRect().width}))""")
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0 and i["shown"] > 0)]
    assert not broken, f"images that do not render: {broken}"
    # every picture of reports/figures and of the gradient study is on the page, nothing else
    on_disk = {p.relative_to(REPORTS).as_posix() for folder in ("figures", "gradients")
               for p in (REPORTS / folder).rglob("*.png")}
    assert sorted(i["src"] for i in images) == sorted(on_disk)
    tables = page.evaluate("""[...document.querySelectorAll('table')].map(t => ({
        rows: t.querySelectorAll('tbody tr').length,
        cells: t.querySelectorAll('tbody td').length,
        height: t.getBoundingClientRect().height}))""")
    assert tables, "the page has no table"
    assert all(t["rows"] > 0 and t["cells"] > 0 and t["height"] > 0 for t in tables), tables
    save_in_tiles(page, screenshots / "report")
    page.close()
    assert not problems, problems
