"""Outputs never destroy inputs or each other, are written atomically; non-ASCII names."""
import hashlib
import os
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.cli.main import main
from xcrfilter.io.frames import as_energy_cube
from xcrfilter.io.eventfile import read_events
from xcrfilter.io.outputs import atomic_write, check_outputs


def _frames_file(path, bunit="eV", **cards):
    cube = np.zeros((2, 32, 32), np.float32)
    cube[0, 8, 8] = 1500.0
    cube[1, 20, 20] = 12000.0
    hdu = fits.PrimaryHDU(cube)
    if bunit is not None:
        hdu.header["BUNIT"] = bunit
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def frames(tmp_path):
    return _frames_file(tmp_path / "in.fits")


@pytest.mark.parametrize("extra", [
    ["-o", "{in}"],                                       # -o is the input
    ["-o", "{ev}", "--mask-output", "{in}"],              # mask over the input
    ["-m", "cam", "-o", "{ev}", "--cam-output", "{in}"],  # CAM maps over the input
    ["-o", "{ev}", "--mask-output", "{ev}"],              # two outputs, one file
    ["-m", "cam", "-o", "{ev}", "--cam-output", "{ev}"],
    ["-m", "cam", "-o", "{ev}", "--mask-output", "{m}", "--cam-output", "{m}"],
    ["-o", "{link}"],                                     # a symbolic link to the input
])
def test_filter_refuses_colliding_outputs(frames, tmp_path, capsys, extra):
    link = tmp_path / "link.fits"
    os.symlink(frames, link)
    names = {"in": str(frames), "ev": str(tmp_path / "ev.fits"), "m": str(tmp_path / "m.fits"),
             "link": str(link)}
    before = _digest(frames)
    argv = ["filter", str(frames), "-q", "--overwrite"] + [a.format(**names) for a in extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "is also an input file" in err or "is the same file as" in err
    assert _digest(frames) == before
    assert not (tmp_path / "ev.fits").exists() and not (tmp_path / "m.fits").exists()


def test_lacosmic_refuses_input_as_output(tmp_path, capsys):
    path = _frames_file(tmp_path / "img.fits", bunit="electron")
    before = _digest(path)
    assert main(["lacosmic", str(path), "-o", str(path), "--overwrite"]) == 1
    assert "is also an input file" in capsys.readouterr().err
    assert _digest(path) == before


def test_compare_refuses_report_over_its_input(tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    obs = _frames_file(report / "events.fits")  # the observation has a report file's name
    before = _digest(obs)
    assert main(["compare", str(obs), "-o", str(report), "--method", "vfaint"]) == 1
    assert "is also an input file" in capsys.readouterr().err
    assert _digest(obs) == before


def test_check_outputs_existing_and_hard_link(tmp_path):
    a = tmp_path / "a.fits"
    a.write_bytes(b"x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_outputs({"-o": a}, [])
    check_outputs({"-o": a}, [], overwrite=True)
    os.link(a, tmp_path / "b.fits")
    with pytest.raises(ValueError, match="also an input"):
        check_outputs({"-o": tmp_path / "b.fits"}, [a], overwrite=True)
    with pytest.raises(ValueError, match="same file"):
        check_outputs({"-o": tmp_path / "c.fits", "--mask-output": "./" + os.path.relpath(
            tmp_path / "c.fits")}, [])


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.fits"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as part:
            open(part, "wb").write(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []


def test_killed_write_leaves_no_complete_looking_file(tmp_path):
    """kill -9 in the middle of writing the mask: no MASK.fits, only MASK.fits.part."""
    frames = _frames_file(tmp_path / "in.fits")
    code = textwrap.dedent(f"""
        import os, signal
        from astropy.io import fits
        real = fits.HDUList.writeto
        def writeto(self, name, *args, **kwargs):
            real(self, name, *args, **kwargs)
            if os.path.basename(os.fspath(name)).startswith("mask.fits"):
                with open(name, "r+b") as fh:
                    fh.truncate(2880)  # a truncated file that opens as complete
                os.kill(os.getpid(), signal.SIGKILL)
        fits.HDUList.writeto = writeto
        from xcrfilter.cli.main import main
        main(["filter", {str(frames)!r}, "-q", "-o", {str(tmp_path / 'ev.fits')!r},
              "--mask-output", {str(tmp_path / 'mask.fits')!r}])
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    # the mask is written chunk by chunk while the frames stream, so the event
    # file (written at the end) is not there either
    assert not (tmp_path / "ev.fits").exists()
    assert not (tmp_path / "mask.fits").exists()  # never renamed into place
    assert (tmp_path / "mask.fits.part").exists()


def test_non_ascii_file_names(tmp_path, capsys):
    frames = _frames_file(tmp_path / "ähm_frames.fits")
    out, mask = tmp_path / "ähm_events.fits", tmp_path / "ähm_mask.fits"
    assert main(["filter", str(frames), "-q", "-o", str(out), "--mask-output", str(mask),
                 "-m", "vfaint,sac"]) == 0
    ev = read_events(out)
    assert len(ev) == 2
    assert "\\xe4hm_frames.fits" in ev.meta["INFILE01"]
    assert mask.exists()
    lac = tmp_path / "ähm_lac.fits"
    assert main(["lacosmic", str(frames), "-o", str(lac)]) == 0
    assert lac.exists()


def test_lacosmic_command_reads_bunit_ev(tmp_path, capsys):
    path = _frames_file(tmp_path / "ev_frames.fits", bunit="eV")
    assert main(["lacosmic", str(path), "-o", str(tmp_path / "m.fits")]) == 0
    with fits.open(tmp_path / "m.fits") as hdul:
        assert hdul[0].header["LACCUNIT"] == "electron"
        assert hdul[0].header["BUNIT"] == "eV"


def test_finite_huge_energy_is_out_of_range_not_non_finite():
    data = np.zeros((16, 16))
    data[3, 3] = 1e39
    with pytest.raises(ValueError, match="out of range") as info:
        as_energy_cube(data * u.eV)
    assert "non-finite" not in str(info.value)
    # NaN pixels are still masked with the non-finite warning
    data[3, 3] = np.nan
    with pytest.warns(UserWarning, match="non-finite"):
        cube = as_energy_cube(data * u.eV)
    assert cube.mask[0, 3, 3]


def test_compare_reads_frames_as_filter_does(tmp_path):
    from xcrfilter.cli.compare import file_chunks
    path = _frames_file(tmp_path / "adu.fits", bunit="adu", GAIN=3.65, ADUOFFS=100.0)
    with fits.open(path, mode="update") as hdul:
        hdul[0].data = hdul[0].data / np.float32(3.65) + np.float32(100.0)
        hdul.append(fits.ImageHDU(np.zeros((2, 32, 32), np.uint8), name="TRUTH"))
    cube, _ = next(file_chunks(str(path), str(path), 10, None))
    ref = as_energy_cube(str(path))
    np.testing.assert_allclose(cube.data, ref.data, atol=0.01)
    assert cube.data[0, 8, 8] == pytest.approx(1500.0, abs=0.01)
    nobunit = _frames_file(tmp_path / "nobunit.fits", bunit=None)
    with fits.open(nobunit, mode="update") as hdul:
        hdul.append(fits.ImageHDU(np.zeros((2, 32, 32), np.uint8), name="TRUTH"))
    with pytest.raises(ValueError, match="BUNIT"):
        next(file_chunks(str(nobunit), str(nobunit), 10, None))


def test_missing_keras_backend_is_one_line(frames, tmp_path):
    import importlib.util
    # a Keras backend that this machine lacks (JAX, the default, is a dependency)
    missing = [b for b in ("tensorflow", "torch") if importlib.util.find_spec(b) is None]
    if not missing:
        pytest.skip("needs a Keras backend that is not installed; tensorflow and torch both are")
    backend = missing[0]
    env = dict(os.environ, KERAS_BACKEND=backend)
    # the CAM filter runs without Keras (xcrfilter.ml.netgraph): only training needs it
    proc = subprocess.run([sys.executable, "-m", "xcrfilter.cli.main", "filter", str(frames), "-q",
                           "-m", "cam", "-o", str(tmp_path / "ev.fits")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    tiles = tmp_path / "tiles.npz"
    np.savez(tiles, tiles=np.zeros((4, 64, 64), np.float32), labels=np.zeros(4, int))
    proc = subprocess.run([sys.executable, "-m", "xcrfilter.cli.main", "train", "--tiles", str(tiles),
                           "--simulate-frames", "2", "-o", str(tmp_path / "model")],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert lines == [f"xcrfilter train: error: the Keras backend '{backend}' (environment "
                     f"variable KERAS_BACKEND) is not installed (No module named '{backend}'); "
                     "install it or set KERAS_BACKEND=jax."]
    assert "Traceback" not in proc.stderr


def test_train_refuses_model_files_over_its_inputs(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    tiles = model / "model.json"   # an input with the name of a model file
    tiles.write_text("{}")
    before = _digest(tiles)
    assert main(["train", "--tiles", str(tiles), "--simulate-frames", "2",
                 "-o", str(model)]) == 1
    assert "is also an input file" in capsys.readouterr().err
    assert _digest(tiles) == before


@pytest.mark.skipif(not hasattr(os, "mkfifo"),
                    reason="os.mkfifo is missing (Windows): no FIFO to stand for a device node")
@pytest.mark.parametrize("extra", [["-o", "{fifo}"], ["-o", "{link}"],
                                   ["-o", "{ev}", "--mask-output", "{fifo}"]],
                         ids=["output-fifo", "output-link-to-fifo", "mask-output-fifo"])
def test_filter_never_replaces_a_non_regular_file(frames, tmp_path, capsys, extra):
    """``-o /dev/full --overwrite`` used to rename the events onto the device node; a
    FIFO stands for any non-regular target here (the test must not touch /dev)."""
    import stat
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    os.symlink(fifo, tmp_path / "link.fits")
    names = {"fifo": str(fifo), "link": str(tmp_path / "link.fits"),
             "ev": str(tmp_path / "ev.fits")}
    argv = ["filter", str(frames), "-q", "--overwrite"] + [a.format(**names) for a in extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "not a regular file" in err and ("pipe.fits" in err or "link.fits" in err)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["in.fits", "link.fits", "pipe.fits"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"),
                    reason="os.mkfifo is missing (Windows): no FIFO to stand for a device node")
def test_api_writers_never_replace_a_non_regular_file(frames, tmp_path):
    import stat

    from xcrfilter import run_pipeline
    from xcrfilter.io.eventfile import write_events
    from xcrfilter.simulate import write_simulation
    fifo = tmp_path / "pipe.fits"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        with atomic_write(fifo, overwrite=True) as part:
            open(part, "wb").close()
    events = run_pipeline(str(frames), "vfaint")
    with pytest.raises(ValueError, match="pipe.fits.*not a regular file"):
        write_events(events, fifo, overwrite=True)
    with pytest.raises(ValueError, match="pipe.fits.*not a regular file"):
        write_simulation(fifo, 1, shape=(32, 32), overwrite=True, seed=1)
    with pytest.raises(ValueError, match="not a regular file"):
        check_outputs({"-o": fifo}, overwrite=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["in.fits", "pipe.fits"]


@pytest.mark.parametrize("spelling", ["same", "relative", "link"])
def test_api_refuses_cam_output_over_its_input(frames, tmp_path, monkeypatch, spelling):
    """``cam_filter("in.fits", cam_output="in.fits", overwrite=True)`` used to replace the
    frames with their CAM maps; the API refuses what the command line refuses."""
    from xcrfilter import cam_filter, run_pipeline
    monkeypatch.chdir(tmp_path)
    os.symlink(frames, tmp_path / "link.fits")
    out = {"same": str(frames), "relative": "in.fits", "link": str(tmp_path / "link.fits")}
    before = _digest(frames)
    with pytest.raises(ValueError, match="cam_output .* is also an input file"):
        cam_filter(str(frames), cam_output=out[spelling], overwrite=True)
    with pytest.raises(ValueError, match="cam_output.* is also an input file"):
        run_pipeline(str(frames), "cam",
                     options={"cam": {"cam_output": out[spelling], "overwrite": True}})
    assert _digest(frames) == before


def test_compare_overwrite(tmp_path, capsys):
    """compare used to replace an earlier report silently; it now needs --overwrite."""
    from xcrfilter.simulate import write_simulation
    obs = tmp_path / "obs.fits"
    write_simulation(obs, 2, shape=(32, 32), seed=3)
    report = tmp_path / "report"
    argv = ["compare", str(obs), "-o", str(report), "-m", "vfaint", "--pixel-frames", "0"]
    assert main(argv) == 0
    before = _digest(report / "table.ecsv")
    capsys.readouterr()
    assert main(argv) == 1
    assert "use --overwrite" in capsys.readouterr().err
    assert _digest(report / "table.ecsv") == before
    assert main(argv + ["--overwrite"]) == 0
