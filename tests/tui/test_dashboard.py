"""Pilot tests: every key of the dashboard and the picker, what each panel shows, failures,
small terminals."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from moai_tui.model import ClusterSnapshot
from moai_tui.state import StateStore
from moai_tui.tui.app import SIDE_WIDTH, WIDE, version_label
from moai_tui.tui.screens import ConfirmScreen, FlavorList, FlavorPicker, HelpScreen
from moai_tui.tui.widgets import ClusterGrid, DeviceTable, JobTable

from .helpers import HANG_BOUND_S, T0, make_app, seed_state, settle


def header(app) -> str:
    return app.header.plain


def notice(app) -> str:
    return str(app.query_one("#notice").content)


def state(config_dir):
    return StateStore(config_dir).load()


async def test_shows_cluster_accelerator_gpus_jobs(config_dir):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert "● live" in header(app) and "MoAI 24.5.0" in header(app)
        cluster = app.cluster.plain
        assert "cluster 512 GPUs on 64 nodes" in cluster and "free" in cluster
        assert "you 32 GPUs" in cluster and "fits now:" in cluster
        assert app.query_one(DeviceTable).row_cells(0)[2] == "4xLarge.2048GB"
        grid = app.query_one(ClusterGrid)
        assert len(grid.nodes) == 64 and len(app.frame.mine) == 32
        jobs = app.query_one(JobTable)
        mine = jobs.row_cells(976356)
        assert mine["Command"] == "python tutorial/train_gpt.py" and mine["GPUs"] == "32/4n"
        assert mine["GPU%"] != "-"  # the simulator models each job's utilization
        assert len(jobs.rows) > 30  # every user's job, not only the user's own
        assert "would start here" not in app.legend.plain  # no idle device: no such mark


async def test_idle_first_screen_shows_the_cluster_and_where_a_job_would_start(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        state_cell = app.query_one(DeviceTable).row_cells(0)[-1]
        assert state_cell.startswith("idle · a job would start now on node")
        landing = app.frame.landings[0]
        assert len(landing.gpus) == 8
        grid = app.query_one(ClusterGrid)
        screen = "\n".join("".join(t for t, _ in line) for line in grid.lines)
        assert screen.count("○") == 8  # where it would land, marked
        assert "would start here" in app.legend.plain


async def test_q_and_ctrl_c_quit(config_dir):
    for key in ("q", "ctrl+c"):
        app = make_app(config_dir)
        async with app.run_test() as pilot:
            await settle(pilot, app)
            await pilot.press(key)
            await pilot.pause()
        assert app.return_code == 0 and not app.is_running, key


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


async def test_plus_minus_change_interval_with_floor_and_ceiling(config_dir):
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        await pilot.press("minus", "minus", "minus", "minus")
        assert app.interval == 0.25 and "every 0.25s" in header(app)
        await pilot.press("plus")
        assert app.interval == 0.5
        await pilot.press(*["plus"] * 8)
        assert app.interval == 10.0


async def test_interval_that_is_not_finite_is_clamped(config_dir):
    for wanted in (float("inf"), float("nan"), 1e9):
        app = make_app(config_dir, interval=wanted)
        assert 0.25 <= app.interval <= 10.0, wanted


async def test_t_cycles_theme_says_which_and_remembers_it(config_dir):
    seed_state(config_dir, "Small.64GB")
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        assert app.theme == "moai-dark"
        await pilot.press("t")
        assert app.theme == "moai-high-contrast"
        await _until(pilot, lambda: state(config_dir).theme == "moai-high-contrast")
        assert any("theme: moai-high-contrast" in n.message for n in app._notifications)
    again = make_app(config_dir)
    async with again.run_test() as pilot:
        assert again.theme == "moai-high-contrast"


async def test_theme_from_the_command_palette_is_remembered_too(config_dir):
    seed_state(config_dir, "Small.64GB")
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        grid = app.query_one(ClusterGrid)
        dark_red = grid.style_of("full").color.triplet
        command = next(
            c for c in app.get_system_commands(app.screen) if c.title == "Theme: moai-light"
        )
        command.callback()
        await _until(pilot, lambda: state(config_dir).theme == "moai-light")
        # The marks take the new theme's colours (component classes, not baked strings):
        # moai-dark's error is #FF5C5C, moai-light's #C62828.
        light_red = grid.style_of("full").color.triplet
        assert dark_red.red > 0xF8 and abs(light_red.red - 0xC6) <= 2 and light_red.green < 0x30


async def test_no_theme_files_found_falls_back_to_textual_dark(config_dir, monkeypatch):
    # A broken install (no themes/ anywhere) once crashed at mount with InvalidThemeError.
    monkeypatch.setattr("moai_tui.tui.app.load_themes", dict)
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        assert app.theme == "textual-dark"
        assert app.sample is not None


async def test_help_opens_on_question_mark_h_and_f1_listing_every_key(config_dir):
    app = make_app(config_dir)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot, app)
        for key in ("question_mark", "h", "f1"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen), key
            shown = str(app.screen.query_one("#help").content)
            for keys, _ in app.KEY_HELP:
                assert keys in shown
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)


async def test_help_key_is_in_the_footer_at_80_columns(config_dir):
    app = make_app(config_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        last = [line for line in _screen_lines(app) if line.strip()][-1]
        assert "? help" in last and "q quit" in last, last


async def test_ctrl_l_redraws_without_changing_anything(config_dir):
    seed_state(config_dir, "Small.64GB")
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        before = _screen_lines(app)
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert app.is_running and _screen_lines(app) == before


async def test_starts_on_the_current_device_and_follows_it(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False, devices=3)
    StateStore(config_dir).update(lambda s: replace(s, current=2))
    app = make_app(config_dir, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        table = app.query_one(DeviceTable)
        assert table.selected_device() == 2
        StateStore(config_dir).update(lambda s: replace(s, current=1))  # another terminal
        await _until(pilot, lambda: table.selected_device() == 1)
        table.focus()
        await pilot.press("down")  # the user moves the cursor: it stays where they put it
        StateStore(config_dir).update(lambda s: replace(s, current=0))
        await settle(pilot, app, app.backend.samples + 2)
        assert table.selected_device() == 2 and table.row_cells(0)[0] == "*"


async def test_d_and_enter_make_selected_device_current(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False, devices=3)
    app = make_app(config_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        app.query_one(DeviceTable).focus()
        await pilot.press("down", "d")
        await _until(pilot, lambda: state(config_dir).current == 1)
        await pilot.press("down", "enter")
        await _until(pilot, lambda: state(config_dir).current == 2)
        await settle(pilot, app, app.backend.samples + 1)
        assert app.query_one(DeviceTable).row_cells(2)[0] == "*"


async def test_click_selects_device_row(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False, devices=2)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot, app)
        await pilot.click(DeviceTable, offset=(10, 2))
        await pilot.pause()
        assert app.query_one(DeviceTable).selected_device() == 1
        assert "Device 1" in app.side.plain


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


async def test_r_in_the_jobs_table_stops_the_job_under_the_cursor_only_if_yours(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        jobs = app.query_one(JobTable)
        jobs.focus()
        await pilot.press("down", "r")  # another user's job
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("only your own jobs" in n.message for n in app._notifications)
        await pilot.press("home", "r")  # the user's own job comes first
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await _until(pilot, lambda: state(config_dir).jobs == ())


async def test_markup_and_control_characters_in_a_command_are_shown_as_text(config_dir):
    command = "python train.py trainer.devices=[0,1] --out [/data] [b]bold\x1b[2J\x07"
    seed_state(config_dir, "xLarge.512GB")
    StateStore(config_dir).update(lambda s: replace(s, jobs=(replace(s.jobs[0], command=command),)))
    app = make_app(config_dir)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app)
        shown = "\n".join(_screen_lines(app))
        assert "trainer.devices=[0,1] --out [/data] [b]bold\\x1b[2J\\x07" in shown
        assert "\x1b" not in shown and "\x07" not in shown
        await pilot.press("r")  # the confirmation quotes the command: it once crashed here
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        question = str(app.screen.query_one("#confirm").content)
        assert "[/data] [b]bold\\x1b[2J\\x07" in question
        await pilot.press("n")


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
        assert app.query_one(DeviceTable).row_cells(0)[2] == "4xLarge.2048GB"


async def test_f_with_a_corrupt_state_file_says_why_instead_of_crashing(config_dir):
    config_dir.mkdir(parents=True)
    (config_dir / "state.toml").write_text("version = 1\ncurrent = 0\ndevices = [{id = 0, fl")
    app = make_app(config_dir, interval=0.25)
    async with app.run_test(size=(120, 40)) as pilot:
        await _until(pilot, lambda: "STALE" in header(app))
        assert "mv " in notice(app) and "state.toml.bad" in notice(app)  # the fix, in full
        await pilot.press("f")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, FlavorPicker)
        assert any("state.toml" in n.message for n in app._notifications)


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


async def test_picker_filter_without_match_says_so_and_keeps_its_size(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("x", "2")
        await pilot.pause()
        assert "no flavor matches 'x2'" in str(app.screen.query_one("#filter").content)
        assert app.screen.query_one("#picker").outer_size.width >= 60  # it once fell to 6


async def test_picker_counts_are_singular_for_one(config_dir):
    _, _, _, _ = await picker_after(config_dir, ())
    from moai_tui.tui.screens import flavor_row

    from .helpers import CATALOG

    row = flavor_row(1, CATALOG.get("Small.64GB"), "", None, 16).plain
    assert "1 GPU " in row and "1 node " in row and "GPUs" not in row


async def test_picker_escape_and_q_close_without_change(config_dir):
    for keys in (("escape",), ("q",), ("m", "escape", "escape")):
        app, _, _, open_ = await picker_after(config_dir, (*keys,))
        assert not open_, keys
        assert _flavor(config_dir) == "xLarge.512GB"


async def test_picker_says_the_device_is_busy_and_switching_is_refused(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=True)
    before = (config_dir / "state.toml").read_bytes()
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        await pilot.press("f")
        await pilot.pause()
        busy = str(app.screen.query_one("#busy").content)
        assert "Device 0 is busy: job 976356 holds it" in busy
        await pilot.press("1", "enter")
        await _until(pilot, lambda: bool(app._notifications))
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
        await pilot.click(FlavorList, offset=(10, 1))  # the row of flavor 2
        await pilot.pause()
        assert options.get_option_at_index(options.highlighted).id == "Medium.128GB"
        assert isinstance(app.screen, FlavorPicker) and _flavor(config_dir) == "xLarge.512GB"
        await pilot.double_click(FlavorList, offset=(10, 2))
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
        assert "RuntimeError: exporter on fire" in notice(app)
        assert app.sample is good and app.query_one(DeviceTable).row_cells(0)[5] != "-"
        count = app.backend.samples
        await _until(pilot, lambda: app.backend.samples > count + 1)  # keeps retrying
        app.backend.fail = None
        await _until(pilot, lambda: "live" in header(app) and "STALE" not in header(app))
        assert "exporter on fire" not in notice(app)


async def test_backend_that_hangs_never_blocks_keys(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir, interval=0.25, hang_after=0.5)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        app.backend.hang.set()
        await _until(pilot, lambda: "backend not answering" in notice(app), timeout=5)
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


async def test_a_bug_in_a_sample_is_shown_and_the_poller_goes_on(config_dir):
    seed_state(config_dir, "xLarge.512GB")
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        take = app.sampler.take
        app.sampler.take = lambda: (_ for _ in ()).throw(OverflowError("inf"))
        await _until(pilot, lambda: "OverflowError: inf" in notice(app))
        app.sampler.take = take
        await _until(pilot, lambda: "STALE" not in header(app))


async def test_data_that_stops_arriving_is_marked_stale(config_dir):
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        app.last_sample_at = time.monotonic() - 60  # as if the poller had died a minute ago
        app._watch()
        assert "STALE" in header(app) and "no new sample for" in notice(app)


async def test_switch_in_another_terminal_shows_within_one_refresh(config_dir):
    seed_state(config_dir, "xLarge.512GB", running=False)
    app = make_app(config_dir, interval=0.25)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        from conftest import run_cli

        assert run_cli("switch", "-M", "Large.256GB").returncode == 0
        await _until(
            pilot, lambda: app.query_one(DeviceTable).row_cells(0)[2] == "Large.256GB", timeout=5
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


async def test_a_resize_while_paused_lays_the_grid_out_for_the_new_size(config_dir):
    """The grid's room comes from the size the Resize event carries: the app's own size is
    still the old one while its handler runs, and a paused dashboard draws no new sample that
    would correct it."""
    app = make_app(config_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await pilot.press("p")
        grid = app.query_one(ClusterGrid)
        for width, height in ((160, 45), (90, 28), (130, 40)):
            await pilot.resize_terminal(width, height)
            await _until(pilot, lambda size=(width, height): app.size == size)
            side = SIDE_WIDTH if width >= WIDE else 0
            assert grid.room_width == width - side, (width, grid.room_width)


async def test_grid_shows_every_node_and_the_cursor_node_in_detail(config_dir):
    seed_state(config_dir, "48xLarge.24576GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        grid = app.query_one(ClusterGrid)
        assert len(grid.nodes) == 64 and grid.rows_needed <= len(grid.lines)  # all in view
        assert len(app.frame.mine) == 384
        grid.focus()
        await pilot.press("end")
        assert grid.current_node() == "node63" and "node63" in app.side.plain
        await pilot.press("home", "down")
        assert grid.cursor == grid.columns


async def test_grid_sorts_by_name_util_memory_temperature(config_dir):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        grid = app.query_one(ClusterGrid)
        grid.focus()
        names = [n.name for n in grid.nodes]
        assert names[:3] == ["node00", "node01", "node02"]
        await pilot.press("s")
        assert grid.sort == "util"
        utils = [u or 0 for u in map(_node_util, grid.nodes)]
        assert utils[0] >= utils[-1] + 50
        await pilot.press("s", "s", "s")
        assert grid.sort == "name"


async def test_jobs_table_grows_keeps_its_header_and_sorts(config_dir):
    seed_state(config_dir, "4xLarge.2048GB")
    app = make_app(config_dir)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app)
        jobs = app.query_one(JobTable)
        assert len(jobs.lines) > 25  # the table grows with the terminal
        jobs.focus()
        await pilot.press("end")
        first = "".join(t for t, _ in jobs.lines[0])
        assert "Job ID" in first and "Command" in first  # the header stays on top
        assert any("cursor" in style for _, style in jobs.lines[-1])  # the cursor is shown
        await pilot.press("s")
        assert jobs.sort == "GPUs"
        gpus = [row.gpus for row in jobs.rows]
        assert gpus == sorted(gpus, reverse=True)
        assert "sort: GPUs" in str(app.query_one("#jobs-pane").border_title)
        assert "GPUs by user:" in str(app.query_one("#jobs-pane").border_title)


async def test_a_waiting_job_says_what_it_waits_for(config_dir):
    seed_state(config_dir, "48xLarge.24576GB")
    StateStore(config_dir).update(
        lambda s: replace(s, jobs=(replace(s.jobs[0], submitted=T0 - 5),))
    )
    app = make_app(config_dir)
    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, app)
        row = app.query_one(DeviceTable).row_cells(0)
        assert row[-1].startswith("waiting: needs 48 whole nodes,") and "free" in row[-1]
        command = app.query_one(JobTable).row_cells(976356)["Command"]
        assert command.startswith("[waiting: needs 48 whole nodes")


async def test_every_segment_carries_a_style(config_dir, monkeypatch):
    # A segment without one is drawn in the terminal's default colours (a patchwork on light
    # terminals) and crashed Textual's NO_COLOR filter at start.
    monkeypatch.setenv("NO_COLOR", "1")
    seed_state(config_dir, "4xLarge.2048GB", devices=2)
    app = make_app(config_dir)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, app)
        assert app.no_color
        for widget in app.query("LineWidget"):
            for y in range(widget.size.height):
                for segment in widget.render_line(y):
                    assert segment.style is not None, (widget, y, segment)


async def test_every_key_is_in_the_command_palette(config_dir):
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
        titles = " ".join(c.title for c in app.get_system_commands(app.screen))
        for key in ("(f)", "(d)", "(p)", "(+)", "(-)", "(t)", "(r)", "(s)", "(?)", "(q)"):
            assert key in titles
        assert "Screenshot" not in titles and "Maximize" not in titles
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


def _node_util(node):
    known = [g.util for g in node.gpus if g.util is not None]
    return sum(known) / len(known) if known else None


def _screen_lines(app) -> list[str]:
    """The screen's text as the terminal would show it."""
    strips = app.screen._compositor.render_strips()
    return ["".join(segment.text for segment in strip) for strip in strips]


def _flavor(config_dir) -> str:
    current = state(config_dir)
    return current.device(current.current).flavor


async def _until(pilot, predicate, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    assert predicate(), "condition not reached in time"


async def test_a_gpu_held_by_a_job_the_user_may_not_see_says_so(config_dir):
    """Slurm with PrivateData=jobs: a GPU allocated to someone else's job comes with job id 0;
    the side panel says the job is hidden, not "job 0"."""
    seed_state(config_dir, "Small.64GB", running=False)
    app = make_app(config_dir, nodes=4)
    sample = app.backend.sample

    def hidden_holder(requests=()):
        snapshot = sample(requests)
        node, *rest = snapshot.nodes
        gpu, *others = node.gpus
        node = replace(node, gpus=(replace(gpu, job_id=0), *others))
        return replace(snapshot, nodes=(node, *rest))

    app.backend.sample = hidden_holder
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot, app)
        assert app.query_one(ClusterGrid).current_node() == "node00"
        gpu0 = next(line for line in app.side.plain.splitlines() if line.startswith(" 0 "))
        assert gpu0.rstrip().endswith(" hidden")


def test_the_header_names_a_platform_only_when_it_adds_something():
    prometheus = ClusterSnapshot(0.0, "prometheus", "me", (), platform="Prometheus")
    assert version_label(prometheus) == ""  # "prometheus ... Prometheus" said it twice
    driver = replace(prometheus, platform="NVIDIA driver", version_current="580.159.04")
    assert version_label(driver) == "NVIDIA driver 580.159.04"


async def test_a_watch_tick_or_a_sample_during_shutdown_is_harmless(config_dir):
    """The once-a-second check and a sample's message can come after the widgets are gone (each
    seen once in loaded full runs: ScreenStackError, NoMatches at exit); they then do nothing."""
    app = make_app(config_dir)
    async with app.run_test() as pilot:
        await settle(pilot, app)
    assert not app.screen_stack
    app._watch()  # the tick that came too late
    app._render_frame()  # and a sample that landed then (NoMatches, seen once too)
