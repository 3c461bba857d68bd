"""Pilot tests: every key of the dashboard and the picker, failures, small terminals."""

from __future__ import annotations

import asyncio

from moai_tui.state import StateStore
from moai_tui.tui.screens import ConfirmScreen, FlavorList, FlavorPicker, HelpScreen
from moai_tui.tui.widgets import DeviceList, GpuMap

from .helpers import HANG_BOUND_S, make_app, seed_state, settle


def header(app) -> str:
    return app.query_one("#header").content.plain


def state(config_dir):
    return StateStore(config_dir).load()


async def test_shows_accelerator_gpus_jobs(config_dir):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "● live" in header(app) and "Current Version: 24.5.0" in header(app)
        table = app.query_one(DeviceList)
        assert table.row_cells(0)[2] == "4xLarge.2048GB"
        gpus = app.query_one(GpuMap)
        assert sum(len(g) for _, g in gpus.nodes) == 32 and len(gpus.nodes) == 4
        jobs = app.query_one("#job-list")
        assert jobs.row_cells(976356)[4] == "python tutorial/train_gpt.py"


async def test_q_quits(config_dir):
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_p_pauses_and_resumes(config_dir):
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        assert "paused" in header(app)
        count = app.backend.samples
        await pilot.pause(0.8)
        assert app.backend.samples == count  # no polling while paused
        await pilot.press("p")
        await settle(pilot, app, count + 2)
        assert "live" in header(app) and app.backend.samples >= count + 2


async def test_plus_minus_change_interval_with_floor(config_dir):
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("minus", "minus", "minus", "minus")
        assert app.interval == 0.25 and " 0.25s" in header(app)
        await pilot.press("plus")
        assert app.interval == 0.5


async def test_t_cycles_theme_and_remembers_it(config_dir):
    seed_state(config_dir, "Small.64GB")
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        assert app.theme == "moai-dark"
        await pilot.press("t")
        assert app.theme == "moai-high-contrast"
        for _ in range(50):
            if state(config_dir).theme == "moai-high-contrast":
                break
            await pilot.pause(0.02)
    assert state(config_dir).theme == "moai-high-contrast"
    again = make_app(config_dir)
    async with again.run_test() as pilot:
        assert again.theme == "moai-high-contrast"


async def test_no_theme_files_found_falls_back_to_textual_dark(config_dir, monkeypatch):
    # A broken install (no themes/ anywhere) once crashed at mount with InvalidThemeError.
    monkeypatch.setattr("moai_tui.tui.app.load_themes", dict)
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        assert app.theme == "textual-dark"
        assert app.sample is not None


async def test_question_mark_opens_help_listing_every_key(config_dir):
    app = make_app(config_dir)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = app.screen.query_one("Static").content
        for key, _ in app.KEY_HELP:
            assert key in str(shown)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_d_and_enter_make_selected_device_current(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False, devices=3)
    app = make_app(config_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        app.query_one(DeviceList).focus()
        await pilot.press("down", "d")
        await _until(pilot, lambda: state(config_dir).current == 1)
        await pilot.press("down", "enter")
        await _until(pilot, lambda: state(config_dir).current == 2)
        await settle(pilot, app, app.backend.samples + 1)
        assert app.query_one(DeviceList).row_cells(2)[0] == "*"


async def test_click_selects_device_row(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False, devices=2)
    app = make_app(config_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.click(DeviceList, offset=(10, 2))
        await pilot.pause()
        assert app.query_one(DeviceList).selected_device() == 1
        assert "Device 1" in app.query_one("#side").content.plain


async def test_r_asks_then_stops_the_job(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert len(state(config_dir).jobs) == 1
        await pilot.press("r", "y")
        await _until(pilot, lambda: state(config_dir).jobs == ())


async def test_f_opens_picker_on_current_flavor_and_switches(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, FlavorPicker)
        options = picker.query_one(FlavorList)
        assert options.get_option_at_index(options.highlighted).id == "xLarge.512GB"
        await pilot.press("down", "down", "down", "down", "enter")
        await _until(pilot, lambda: _flavor(config_dir) == "4xLarge.2048GB")
        assert not isinstance(app.screen, FlavorPicker)
        await settle(pilot, app, app.backend.samples + 1)
        assert app.query_one(DeviceList).row_cells(0)[2] == "4xLarge.2048GB"


async def picker_after(config_dir, keys, flavor="xLarge.512GB", running=False, catalog=None):
    seed_state(config_dir, flavor, running=running)
    app = make_app(config_dir)
    if catalog is not None:
        app.ctx.catalog = catalog
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        picker = app.screen
        await pilot.press(*keys)
        await pilot.pause()
        if not isinstance(app.screen, FlavorPicker):
            return app, None, [], False
        options = picker.query_one(FlavorList)
        highlighted = (
            options.get_option_at_index(options.highlighted).id
            if options.highlighted is not None
            else None
        )
        visible = [options.get_option_at_index(i).id for i in range(options.option_count)]
        return app, highlighted, visible, isinstance(app.screen, FlavorPicker)


async def test_picker_navigation_keys(config_dir):
    cases = {
        ("down",): "1.5xLarge.768GB",
        ("j", "j"): "2xLarge.1024GB",
        ("up",): "Large.256GB",
        ("k",): "Large.256GB",
        ("home",): "Small.64GB",
        ("end",): "48xLarge.24576GB",
        ("pagedown",): "48xLarge.24576GB",
        ("end", "pageup"): "Small.64GB",
    }
    for keys, expected in cases.items():
        _, highlighted, _, open_ = await picker_after(config_dir, keys)
        assert highlighted == expected and open_, keys


async def test_picker_two_digit_jump_and_single_digits(config_dir):
    assert (await picker_after(config_dir, ("1", "3")))[1] == "48xLarge.24576GB"
    assert (await picker_after(config_dir, ("8",)))[1] == "4xLarge.2048GB"
    assert (await picker_after(config_dir, ("1",)))[1] == "Small.64GB"


async def test_picker_two_digits_far_apart_are_two_jumps(config_dir):
    now = [0.0]
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        app.screen.clock = lambda: now[0]
        await pilot.press("1")
        now[0] = 2.0  # past the window: "3" is its own jump
        await pilot.press("3")
        options = app.screen.query_one(FlavorList)
        assert options.get_option_at_index(options.highlighted).id == "Large.256GB"


async def test_picker_letters_filter(config_dir):
    _, highlighted, visible, _ = await picker_after(config_dir, ("m", "e", "d"))
    assert visible == ["Medium.128GB"] and highlighted == "Medium.128GB"
    _, _, visible, _ = await picker_after(config_dir, ("x", "l", "a", "r", "g", "e"))
    assert visible[0] == "xLarge.512GB" and len(visible) == 10
    _, _, visible, open_ = await picker_after(config_dir, ("m", "e", "backspace", "backspace"))
    assert len(visible) == 13 and open_


async def test_picker_escape_and_q_close_without_change(config_dir):
    for keys in (("escape",), ("q",), ("m", "escape", "escape")):
        app, _, _, open_ = await picker_after(config_dir, (*keys,))
        assert not open_, keys
        assert _flavor(config_dir) == "xLarge.512GB"


async def test_picker_refused_while_job_runs(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=True)
    before = (config_dir / "state.toml").read_bytes()
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f", "1", "enter")
        for _ in range(100):
            if app._notifications:
                break
            await pilot.pause(0.02)
        messages = [n.message for n in app._notifications]
        assert messages == ["The model cannot be switched while the MoAI Accelerator is in use."]
    assert (config_dir / "state.toml").read_bytes() == before


async def test_picker_mouse_click_selects_double_click_switches(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        options = app.screen.query_one(FlavorList)
        await pilot.click(FlavorList, offset=(10, 2))  # row of flavor 2 (inside the border)
        await pilot.pause()
        assert options.get_option_at_index(options.highlighted).id == "Medium.128GB"
        assert isinstance(app.screen, FlavorPicker) and _flavor(config_dir) == "xLarge.512GB"
        await pilot.double_click(FlavorList, offset=(10, 3))
        await _until(pilot, lambda: _flavor(config_dir) == "Large.256GB")


async def test_picker_works_for_8_and_30_entry_catalogs(config_dir):
    from moai_tui.catalog import parse_catalog

    for size in (8, 30):
        entries = ",".join(f"{{name='f{i:02d}', gpus={1 + i % 8}, nodes=1}}" for i in range(size))
        catalog = parse_catalog(f"mib_per_gpu=100\ngpus_per_node=8\nflavors=[{entries}]", "t")
        flavor = "f00"
        keys = ("2", "5") if size == 30 else ("7",)
        _, highlighted, visible, _ = await picker_after(
            config_dir, keys, flavor=flavor, catalog=catalog
        )
        assert len(visible) == size
        assert highlighted == ("f24" if size == 30 else "f06")


async def test_backend_that_raises_keeps_last_data_marked_stale(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        good = app.sample
        app.backend.fail = RuntimeError("exporter on fire")
        await _until(pilot, lambda: "STALE" in header(app))
        assert "RuntimeError: exporter on fire" in header(app)
        assert app.sample is good and app.query_one(DeviceList).row_cells(0)[5] != "-"
        count = app.backend.samples
        await _until(pilot, lambda: app.backend.samples > count + 1)  # keeps retrying
        app.backend.fail = None
        await _until(pilot, lambda: "live" in header(app) and "STALE" not in header(app))


async def test_backend_that_hangs_never_blocks_keys(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir, interval=0.25, hang_after=0.5)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        app.backend.hang.set()
        await _until(pilot, lambda: "backend not answering" in header(app), timeout=5)
        assert "STALE" in header(app)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await pilot.press("question_mark")
        # The backend hangs for 30 s: only a UI blocked on it takes anywhere near that. How
        # fast a key lands is a benchmark's business (benchmarks/), not a test's.
        assert isinstance(app.screen, HelpScreen) and loop.time() - started < HANG_BOUND_S
        await pilot.press("escape")
        app.backend.hang.clear()
        app.backend.release.set()
        await _until(pilot, lambda: "STALE" not in header(app), timeout=5)


async def test_switch_in_another_terminal_shows_within_one_refresh(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        from conftest import run_cli

        assert run_cli("switch", "-M", "Large.256GB").returncode == 0
        await _until(
            pilot, lambda: app.query_one(DeviceList).row_cells(0)[2] == "Large.256GB", timeout=2
        )


async def test_small_terminal_shows_enlarge_notice(config_dir):
    app = make_app(config_dir)
    async with app.run_test(size=(50, 12)) as pilot:
        await settle(pilot, app)
        assert app.screen.has_class("too-small")
        assert app.query_one("#too-small").display and not app.query_one("#main").display
    roomy = make_app(config_dir)
    async with roomy.run_test(size=(80, 24)) as pilot:
        await settle(pilot, roomy)
        assert not roomy.screen.has_class("too-small")
        await pilot.resize_terminal(20, 5)  # shrinking while it runs
        await _until(pilot, lambda: roomy.screen.has_class("too-small"))
        await pilot.resize_terminal(120, 40)
        await _until(pilot, lambda: not roomy.screen.has_class("too-small"))
        assert roomy.query_one("#main").display


async def test_48xlarge_compact_heatmap_scrolls_by_node(config_dir):
    seed_state(config_dir, "48xLarge.24576GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        gpus = app.query_one(GpuMap)
        assert gpus.compact and len(gpus.nodes) == 48
        gpus.focus()
        await pilot.press(*["down"] * 30)
        await pilot.pause()
        assert gpus.cursor == 30
        assert app.query_one("#gpu-scroll").scroll_y > 0
        assert gpus.current_node() in app.query_one("#side").content.plain


def _flavor(config_dir) -> str:
    current = state(config_dir)
    return current.device(current.current).flavor


async def _until(pilot, predicate, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    assert predicate(), "condition not reached in time"


async def test_every_key_is_in_the_command_palette(config_dir):
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        titles = " ".join(c.title for c in app.get_system_commands(app.screen))
        for key in ("(f)", "(d)", "(p)", "(+)", "(-)", "(t)", "(r)", "(?)"):
            assert key in titles
        assert "Quit" in titles  # Textual's own, q
        command = next(c for c in app.get_system_commands(app.screen) if "(p)" in c.title)
        command.callback()
        assert app.paused


def test_bad_theme_file_names_the_file(tmp_path):
    import pytest

    from moai_tui.errors import UsageError
    from moai_tui.tui.themes import parse_theme

    for text, needle in (
        ("name = 'x'\nprimary = 'not-a-colour'", "'primary' is not a colour"),
        ("primary = '#fff'", "needs a 'name'"),
        ("name = [", "not valid TOML"),
        ("name='x'\nprimary='#fff'\nsparkle=1", "unknown keys"),
    ):
        with pytest.raises(UsageError) as caught:
            parse_theme(text, "/home/u/.config/moai-tui/themes/bad.toml")
        assert "bad.toml" in str(caught.value) and needle in str(caught.value)
