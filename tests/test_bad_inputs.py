"""Bad-input sweep of the command line: every hostile input fails cleanly.

Each case runs ``xcrfilter`` in-process and asserts a non-zero exit, exactly
one ``error:`` line naming the bad thing, no traceback, no output file left
behind and every input file byte for byte unchanged.
"""
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from astropy.io import fits

from xcrfilter.cli.main import main
from xcrfilter.ml.model import default_model_dir


def _cube_hdu(shape=(2, 32, 32), bunit="eV", dtype=np.float32, **cards):
    cube = np.zeros(shape, dtype)
    if len(shape) == 3 and shape[0] and min(shape[1:]) > 20:
        cube[0, 8, 8] = 1500
        cube[-1, 20, 20] = 3000
    hdu = fits.PrimaryHDU(cube)
    if bunit is not None:
        hdu.header["BUNIT"] = bunit
    for key, value in cards.items():
        hdu.header[key] = value
    return hdu


def _read_only_dir(base):
    """A directory no file can be created in (chmod 555, or /sys for root)."""
    ro = base / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for cand in (str(ro), "/sys"):
        try:
            open(os.path.join(cand, "probe.fits"), "wb").close()
        except OSError:
            return cand
        os.remove(os.path.join(cand, "probe.fits"))
    return None


def make_files(d):
    """The hostile inputs in directory ``d``: name -> path."""
    p = {}

    def put(name, hdus):
        path = d / name
        fits.HDUList(hdus if isinstance(hdus, list) else [hdus]).writeto(path)
        p[name.split(".")[0]] = str(path)

    put("good.fits", _cube_hdu())
    (d / "empty.fits").write_bytes(b"")
    p["empty"] = str(d / "empty.fits")
    (d / "text.fits").write_text("SIMPLE = T but not really a FITS file\n")
    p["text"] = str(d / "text.fits")
    (d / "truncated.fits").write_bytes((d / "good.fits").read_bytes()[:4000])
    p["truncated"] = str(d / "truncated.fits")
    p["fifos"] = []
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo.fits")
        p["fifo"] = str(d / "fifo.fits")
        # a CAM model directory whose model.json is a FIFO
        shutil.copytree(default_model_dir(), d / "model_fifo")
        (d / "model_fifo" / "model.json").unlink()
        os.mkfifo(d / "model_fifo" / "model.json")
        p["model_fifo"] = str(d / "model_fifo")
        p["fifos"] = [p["fifo"], str(d / "model_fifo" / "model.json")]
    (d / "adir.fits").mkdir()
    p["adir"] = str(d / "adir.fits")
    put("table.fits", [fits.PrimaryHDU(),
                       fits.BinTableHDU.from_columns([fits.Column("X", "J", array=[1, 2])])])
    put("fourd.fits", _cube_hdu(shape=(2, 2, 16, 16)))
    put("noframes.fits", _cube_hdu(shape=(0, 32, 32)))
    put("tiny.fits", _cube_hdu(shape=(2, 3, 3)))
    put("parsecs.fits", _cube_hdu(bunit="parsec"))
    put("adunogain.fits", _cube_hdu(bunit="adu"))
    put("textgain.fits", _cube_hdu(bunit="adu", GAIN="fast"))
    put("textoffs.fits", _cube_hdu(bunit="adu", GAIN=3.65, ADUOFFS="high"))
    put("huge.fits", _cube_hdu(dtype=np.float64))
    with fits.open(p["huge"], mode="update") as hdul:
        hdul[0].data[0, 4, 4] = 1e39
    phas = np.zeros((2, 25), np.float32)
    phas[:, 12] = 1000.0
    put("evstr.fits", [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("PHAS", "25E", unit="eV", array=phas),
         fits.Column("ENERGY", "5A", array=["a", "b"])], name="EVENTS")])
    put("evnophas.fits", [fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("PHAS", "9E", unit="eV", array=np.zeros((2, 9), np.float32))],
        name="EVENTS")])
    put("sim.fits", [_cube_hdu(shape=(2, 64, 64)),
                     fits.ImageHDU(np.zeros((2, 64, 64), np.uint8), name="TRUTH")])
    put("simshape.fits", [_cube_hdu(shape=(2, 64, 64)),
                          fits.ImageHDU(np.zeros((2, 32, 32), np.uint8), name="TRUTH")])
    model = d / "model_empty"
    model.mkdir()
    p["model_empty"] = str(model)
    uni = d / "ähm_ö.fits"
    uni.write_bytes((d / "good.fits").read_bytes())
    p["unicode"] = str(uni)
    np.save(d / "tiles.npy", np.zeros((2, 64, 64), np.float32))
    p["npy"] = str(d / "tiles.npy")
    np.savez(d / "tiles.npz", tiles=np.zeros((8, 64, 64), np.float32), labels=np.arange(8) % 4)
    p["tiles"] = str(d / "tiles.npz")
    p["missing"] = str(d / "missing.fits")
    p["missing_uni"] = str(d / "fehlt_ß.fits")
    p["ro"] = _read_only_dir(d)
    p["nodir"] = str(d / "no" / "such" / "dir")
    return p


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("bad_inputs"))


# (id, argv, text the error line must contain).  {out} is a fresh file
# name, {outdir} a fresh directory name; other names are the files above.
CASES = [
    # --- filter: input files
    ("filter-missing-non-ascii", ["filter", "{missing_uni}", "-o", "{out}"], "fehlt_ß.fits"),
    ("filter-directory", ["filter", "{adir}", "-o", "{out}"], "adir.fits"),
    ("filter-fifo", ["filter", "{fifo}", "-o", "{out}"], "not a regular file"),
    ("filter-not-fits", ["filter", "{text}", "-o", "{out}"], "text.fits"),
    ("filter-truncated", ["filter", "{truncated}", "-o", "{out}"], "truncated.fits"),
    ("filter-table-not-events", ["filter", "{table}", "-o", "{out}"], "table.fits"),
    ("filter-4d-image", ["filter", "{fourd}", "-o", "{out}"], "fourd.fits"),
    ("filter-zero-frames", ["filter", "{noframes}", "-o", "{out}"], "noframes.fits"),
    ("filter-3x3-frames", ["filter", "{tiny}", "-o", "{out}"], "tiny.fits"),
    ("filter-bunit-parsec", ["filter", "{parsecs}", "-o", "{out}"], "BUNIT"),
    ("filter-adu-no-gain", ["filter", "{adunogain}", "-o", "{out}"], "gain"),
    ("filter-text-gain-card", ["filter", "{textgain}", "-o", "{out}"], "GAIN"),
    ("filter-text-aduoffs-card", ["filter", "{textoffs}", "-o", "{out}"], "ADUOFFS"),
    ("filter-1e39-ev-pixel", ["filter", "{huge}", "-o", "{out}"], "out of range"),
    ("filter-mixed-shapes", ["filter", "{good}", "{sim}", "-o", "{out}"], "shape"),
    ("filter-events-text-energy", ["filter", "{evstr}", "-o", "{out}"], "ENERGY"),
    ("filter-events-phas-9", ["filter", "{evnophas}", "-o", "{out}"], "PHAS"),
    # --- filter: outputs
    ("filter-output-read-only-dir", ["filter", "{good}", "-o", "{ro}/ev.fits"], "ev.fits"),
    ("filter-mask-read-only-dir", ["filter", "{good}", "-o", "{out}",
                                   "--mask-output", "{ro}/mask.fits"], "mask.fits"),
    ("filter-cam-output-read-only-dir", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                         "--cam-output", "{ro}/cam.fits"], "cam.fits"),
    ("filter-output-no-dir", ["filter", "{good}", "-o", "{nodir}/ev.fits"], "ev.fits"),
    ("filter-output-under-file", ["filter", "{good}", "-o", "{good}/ev.fits"], "ev.fits"),
    ("filter-mask-is-dir", ["filter", "{good}", "-o", "{out}", "--mask-output", "{adir}"],
     "adir.fits"),
    ("filter-output-dir-is-file", ["filter", "{good}", "--output-dir", "{text}"],
     "--output-dir"),
    ("filter-output-dir-second-input-truncated", ["filter", "{good}", "{truncated}",
                                                  "--output-dir", "{outdir}"],
     "truncated.fits"),
    ("filter-output-dir-second-input-not-fits", ["filter", "{good}", "{text}",
                                                 "--output-dir", "{outdir}"], "text.fits"),
    # --- filter: parameters
    ("filter-unknown-method", ["filter", "{good}", "-o", "{out}", "-m", "vfaint,magic"],
     "magic"),
    ("filter-empty-method", ["filter", "{good}", "-o", "{out}", "-m", ","], "method"),
    ("filter-chunk-zero", ["filter", "{good}", "-o", "{out}", "--chunk-frames", "0"],
     "chunk"),
    ("filter-workers-zero", ["filter", "{good}", "-o", "{out}", "--workers", "0"], "workers"),
    ("filter-event-threshold-nan", ["filter", "{good}", "-o", "{out}",
                                    "--event-threshold", "nan"], "event"),
    ("filter-split-threshold-inf", ["filter", "{good}", "-o", "{out}",
                                    "--split-threshold", "inf"], "split"),
    ("filter-mip-below-event", ["filter", "{good}", "-o", "{out}",
                                "--mip-threshold", "100eV"], "mip"),
    ("filter-gain-zero", ["filter", "{good}", "-o", "{out}", "--gain", "0"], "gain"),
    ("filter-max-lost-xray-150", ["filter", "{good}", "-o", "{out}", "-m", "sac",
                                  "--max-lost-xray", "150%"], "150%"),
    ("filter-max-lost-xray-negative", ["filter", "{good}", "-o", "{out}", "-m", "sac",
                                       "--max-lost-xray", "-1%"], "must be in (0, 1)"),
    ("filter-max-lost-xray-vfaint-only", ["filter", "{good}", "-o", "{out}", "-m", "vfaint",
                                          "--max-lost-xray", "2%"], "--max-lost-xray"),
    ("filter-sac-radius-nan", ["filter", "{good}", "-o", "{out}", "-m", "sac",
                               "--sac-radius", "nan"], "radius"),
    ("filter-sac-track-size-zero", ["filter", "{good}", "-o", "{out}", "-m", "sac",
                                    "--sac-track-size", "0"], "track"),
    ("filter-sac-track-energy-negative", ["filter", "{good}", "-o", "{out}", "-m", "sac",
                                          "--sac-track-energy=-1keV"], "track"),
    ("filter-cam-band-parsecs", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                 "--cam-band", "5", "parsecs"], "parsecs"),
    ("filter-cam-band-reversed", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                  "--cam-band", "10keV", "0.3keV"], "band"),
    ("filter-cam-threshold-above-1", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                      "--cam-threshold", "1.5"], "threshold"),
    ("filter-cam-model-is-file", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                  "--cam-model", "{good}"], "good.fits"),
    ("filter-cam-model-json-fifo", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                    "--cam-model", "{model_fifo}"], "no model.json"),
    ("filter-cam-model-empty-dir", ["filter", "{good}", "-o", "{out}", "-m", "cam",
                                    "--cam-model", "{model_empty}"], "model_empty"),
    ("filter-morph-threshold-negative", ["filter", "{good}", "-o", "{out}", "-m", "morph",
                                         "--morph-threshold", "-0.1"], "threshold"),
    ("filter-morph-model-empty-dir", ["filter", "{good}", "-o", "{out}", "-m", "morph",
                                      "--morph-model", "{model_empty}"], "model_empty"),
    ("filter-lacosmic-sigclip-nan", ["filter", "{good}", "-o", "{out}", "-m", "lacosmic",
                                     "--lacosmic-sigclip", "nan"], "sigclip"),
    ("filter-lacosmic-niter-zero", ["filter", "{good}", "-o", "{out}", "-m", "lacosmic",
                                    "--lacosmic-niter", "0"], "niter"),
    ("filter-phas-unit-parsec", ["filter", "{good}", "-o", "{out}", "--phas-unit", "parsec"],
     "parsec"),
    ("filter-group-frames-zero", ["filter", "{good}", "-o", "{out}", "--group-frames", "0"],
     "group"),
    ("filter-chips-garbage", ["filter", "{good}", "-o", "{out}", "--chips", "3x:garbage"],
     "chips"),
    # --- lacosmic
    ("lacosmic-missing", ["lacosmic", "{missing}", "-o", "{out}"], "missing.fits"),
    ("lacosmic-empty", ["lacosmic", "{empty}", "-o", "{out}"], "empty.fits"),
    ("lacosmic-table", ["lacosmic", "{table}", "-o", "{out}"], "table.fits"),
    ("lacosmic-bunit-parsec", ["lacosmic", "{parsecs}", "-o", "{out}"], "BUNIT"),
    ("lacosmic-unit-option-parsec", ["lacosmic", "{good}", "-o", "{out}", "--unit",
                                     "parsec"], "parsec"),
    ("lacosmic-adu-no-gain", ["lacosmic", "{adunogain}", "-o", "{out}"], "gain"),
    ("lacosmic-text-aduoffs-card", ["lacosmic", "{textoffs}", "-o", "{out}"], "ADUOFFS"),
    ("lacosmic-1e39-ev-pixel", ["lacosmic", "{huge}", "-o", "{out}"], "out of range"),
    ("lacosmic-readnoise-negative", ["lacosmic", "{good}", "-o", "{out}",
                                     "--lacosmic-readnoise", "-1"], "readnoise"),
    ("lacosmic-satlevel-zero", ["lacosmic", "{good}", "-o", "{out}", "--lacosmic-satlevel",
                                "0"], "satlevel"),
    ("lacosmic-psfsize-even", ["lacosmic", "{good}", "-o", "{out}", "--lacosmic-fsmode",
                               "convolve", "--lacosmic-psfsize", "4"], "psfsize"),
    ("lacosmic-output-read-only-dir", ["lacosmic", "{good}", "-o", "{ro}/lac.fits"],
     "lac.fits"),
    ("lacosmic-output-is-dir", ["lacosmic", "{good}", "-o", "{adir}"], "adir.fits"),
    ("lacosmic-no-input", ["lacosmic", "-o", "{out}"], "input"),
    # --- compare
    ("compare-truth-missing", ["compare", "{good}", "--truth", "{missing}", "-o", "{outdir}",
                               "--method", "vfaint"], "missing.fits"),
    ("compare-truncated", ["compare", "{truncated}", "--truth", "{sim}", "-o", "{outdir}",
                           "--method", "vfaint"], "truncated.fits"),
    ("compare-no-truth-non-ascii", ["compare", "{unicode}", "-o", "{outdir}", "--method",
                                    "vfaint"], "ähm_ö.fits: no truth labels"),
    ("compare-truth-shape", ["compare", "{simshape}", "-o", "{outdir}", "--method",
                             "vfaint"], "truth labels (2, 32, 32)"),
    ("compare-bunit-parsec", ["compare", "{parsecs}", "--truth", "{sim}", "-o", "{outdir}",
                              "--method", "vfaint"], "BUNIT"),
    ("compare-max-frames-zero", ["compare", "{sim}", "-o", "{outdir}", "--method", "vfaint",
                                 "--max-frames", "0"], "max-frames"),
    ("compare-chunk-zero", ["compare", "{sim}", "-o", "{outdir}", "--method", "vfaint",
                            "--chunk-frames", "0"], "chunk"),
    ("compare-pixel-frames-negative", ["compare", "{sim}", "-o", "{outdir}", "--method",
                                       "vfaint", "--pixel-frames", "-2"], "pixel-frames"),
    ("compare-unknown-method", ["compare", "{sim}", "-o", "{outdir}", "--method", "magic"],
     "magic"),
    ("compare-output-is-file", ["compare", "{sim}", "-o", "{good}", "--method", "vfaint"],
     "good.fits"),
    ("compare-output-read-only-dir", ["compare", "{sim}", "-o", "{ro}/report", "--method",
                                      "vfaint"], "report"),
    # --- spectrum
    ("spectrum-missing", ["spectrum", "{missing}", "-o", "{outdir}"], "missing.fits"),
    ("spectrum-frames-not-events", ["spectrum", "{good}", "-o", "{outdir}"], "good.fits"),
    ("spectrum-no-pi", ["spectrum", "{evnophas}", "-o", "{outdir}"], "no PI or STATUS"),
    ("spectrum-fifo", ["spectrum", "{fifo}", "-o", "{outdir}"], "fifo.fits"),
    ("spectrum-truncated", ["spectrum", "{truncated}", "-o", "{outdir}"], "truncated.fits"),
    ("spectrum-band-parsec", ["spectrum", "{good}", "-o", "{outdir}", "--band", "2pc", "7keV"],
     "2pc"),
    ("spectrum-exposure-zero", ["spectrum", "{good}", "-o", "{outdir}", "--exposure", "0s"],
     "0s"),
    # --- simulate
    ("simulate-zero-frames", ["simulate", "--frames", "0", "-o", "{out}"], "frames"),
    ("simulate-shape-tiny", ["simulate", "--frames", "1", "--shape", "4", "4", "-o", "{out}"],
     "shape"),
    ("simulate-nan-xray-rate", ["simulate", "--frames", "1", "--shape", "32", "32",
                                "--xray-rate", "nan", "-o", "{out}"], "xray_rate"),
    ("simulate-negative-noise", ["simulate", "--frames", "1", "--shape", "32", "32",
                                 "--readout-noise", "-7", "-o", "{out}"], "noise"),
    ("simulate-unknown-set", ["simulate", "--frames", "1", "--shape", "32", "32",
                              "--set", "warp=9", "-o", "{out}"], "warp"),
    ("simulate-set-not-a-number", ["simulate", "--frames", "1", "--shape", "32", "32",
                                   "--set", "cr_rate=lots", "-o", "{out}"], "cr_rate"),
    ("simulate-chunk-zero", ["simulate", "--frames", "1", "--shape", "32", "32",
                             "--chunk-frames", "0", "-o", "{out}"], "chunk"),
    ("simulate-xray-energy-parsec", ["simulate", "--frames", "1", "--xray-energy", "5pc",
                                     "-o", "{out}"], "5pc"),
    ("simulate-output-exists", ["simulate", "--frames", "1", "--shape", "32", "32",
                                "-o", "{good}"], "good.fits"),
    ("simulate-output-read-only-dir", ["simulate", "--frames", "1", "--shape", "32", "32",
                                       "-o", "{ro}/sim.fits"], "sim.fits"),
    # --- train and demo
    ("train-missing-tiles", ["train", "--tiles", "{missing}", "--frames", "{sim}",
                             "-o", "{outdir}"], "missing.fits"),
    ("train-frames-missing", ["train", "--tiles", "{tiles}", "--frames", "{missing}",
                              "-o", "{outdir}"], "missing.fits"),
    ("train-tiles-not-npz", ["train", "--tiles", "{text}", "--frames", "{sim}",
                             "-o", "{outdir}"], "text.fits"),
    ("train-tiles-npy", ["train", "--tiles", "{npy}", "--frames", "{sim}", "-o", "{outdir}"],
     "tiles.npy"),
    ("train-trees-zero", ["train", "--tiles", "{tiles}", "--frames", "{sim}", "--trees", "0",
                          "-o", "{outdir}"], "trees"),
    ("train-val-fraction-2", ["train", "--tiles", "{tiles}", "--frames", "{sim}",
                              "--val-fraction", "2", "-o", "{outdir}"], "val"),
    ("demo-zero-frames", ["demo", "--frames", "0", "-o", "{outdir}", "-q"], "frames"),
    ("demo-output-read-only-dir", ["demo", "--frames", "2", "-o", "{ro}/demo", "-q"], "demo"),
    ("demo-output-is-file", ["demo", "--frames", "2", "-o", "{good}", "-q"], "good.fits"),
]


def _digests(paths):
    out = {}
    for path in paths:
        if isinstance(path, str) and os.path.isfile(path):
            with open(path, "rb") as fh:
                out[path] = hashlib.sha256(fh.read()).hexdigest()
    return out


@contextlib.contextmanager
def _fifos_released(paths, after=10.0):
    """Open and close the write end of the FIFOs ``paths`` from ``after`` s on.

    A reader of a FIFO waits forever for a writer: with this, a command that
    wrongly reads one fails the test instead of hanging it.
    """
    done = threading.Event()

    def release():
        if done.wait(after):
            return
        while not done.wait(0.05):  # every open of a FIFO waits for a writer
            for path in paths:
                with contextlib.suppress(OSError):  # ENXIO: nobody is reading
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=release, daemon=True).start()
    try:
        yield
    finally:
        done.set()


@pytest.mark.parametrize("argv, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(files, tmp_path, capsys, argv, expected):
    for key in ("ro", "fifo", "model_fifo"):
        if any("{%s}" % key in a for a in argv) and files.get(key) is None:
            pytest.skip(f"case needs the {key!r} path: this platform has no FIFOs (os.mkfifo) "
                        "or no directory that refuses writes")
    names = dict(files, out=str(tmp_path / "out.fits"), outdir=str(tmp_path / "report"))
    argv = [a.format(**names) for a in argv]
    before = _digests(files.values())  # (regular files only)
    with warnings.catch_warnings(), _fifos_released(files["fifos"]):
        warnings.simplefilter("ignore")
        try:
            rc = main(argv)
        except SystemExit as exc:      # argparse: usage line and one error line
            rc = exc.code
        except Exception as exc:       # pragma: no cover - a traceback on the command line
            pytest.fail(f"internal error (a traceback on the command line): {exc!r}")
    err = capsys.readouterr().err
    assert rc not in (0, None)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith(("xcrfilter", "usage:")), lines[0]
    assert expected.lower() in lines[0].lower(), lines[0]
    assert _digests(files.values()) == before
    assert os.listdir(tmp_path) == []           # no output, no .part file left


@pytest.mark.parametrize("argv, work", [
    (["filter", "{good}", "-q", "-o", "{ro}/ev.fits"], "xcrfilter.pipeline.run_pipeline"),
    (["filter", "{good}", "-q", "-o", "{nodir}/ev.fits"], "xcrfilter.pipeline.run_pipeline"),
    (["lacosmic", "{good}", "-o", "{ro}/lac.fits"], "xcrfilter.cli.lacosmic.lacosmic_mask"),
    (["compare", "{sim}", "-o", "{good}", "--method", "vfaint"],
     "xcrfilter.cli.compare.compare_chunks"),
    (["demo", "--frames", "2", "-q", "-o", "{ro}/demo"], "xcrfilter.simulate.write_simulation"),
], ids=["filter-read-only", "filter-no-dir", "lacosmic-read-only", "compare-dir-is-file",
        "demo-read-only"])
def test_unwritable_output_fails_before_the_work(files, monkeypatch, capsys, argv, work):
    """An output that cannot be written is refused before any frame is read."""
    import importlib
    if any("{ro}" in a for a in argv) and files["ro"] is None:
        pytest.skip("no directory refuses writes here (chmod 555 is ignored by this user "
                    "and /sys is writable)")
    module, name = work.rsplit(".", 1)

    def no_work(*args, **kwargs):
        raise AssertionError(f"{name} ran before the outputs were checked")

    monkeypatch.setattr(importlib.import_module(module), name, no_work)
    assert main([a.format(**files) for a in argv]) == 1
    assert "error:" in capsys.readouterr().err


def test_non_ascii_output_name_on_an_ascii_terminal(files, tmp_path):
    """A name the terminal cannot show is escaped in the summary; the command succeeds
    (it used to exit 1 with an encoding error after writing its files)."""
    out = tmp_path / "ähm_events.fits"
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    proc = subprocess.run([sys.executable, "-m", "xcrfilter.cli.main", "filter", files["unicode"],
                           "-q", "-o", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\\xe4hm_events.fits" in proc.stdout and out.exists()


# --- the API: the same bad arguments, one clear exception naming the argument

def _api_frames():
    import astropy.units as u
    cube = np.zeros((2, 32, 32), np.float32)
    cube[0, 8, 8] = 1500.0
    return cube * u.eV


@pytest.mark.parametrize("kwargs, error, expected", [
    (dict(methods=None), TypeError, "methods must be"),
    (dict(methods=3), TypeError, "methods must be"),
    (dict(options=["sac"]), TypeError, "options must be a dict"),
    (dict(methods="sac", options={"sac": 10}), TypeError, r"options\['sac'\] must be a dict"),
    (dict(options={"sac": {"radius": 10}}), ValueError,
     r"method\(s\) that do not run: options\['sac'\] = \['radius'\]"),
    (dict(options={"magic": {}}), ValueError, "unknown method"),
    (dict(chunk_frames="a"), TypeError, "chunk_frames must be a positive integer"),
    (dict(chunk_frames=2.5), TypeError, "chunk_frames must be a positive integer"),
    (dict(mip_threshold=None), TypeError, "mip_threshold"),
    (dict(event_threshold=None), TypeError, "event_threshold"),
], ids=["methods-none", "methods-int", "options-list", "options-value-int",
        "options-method-not-run", "options-unknown-method", "chunk-text", "chunk-float",
        "mip-none", "event-none"])
def test_run_pipeline_bad_arguments(kwargs, error, expected):
    from xcrfilter import run_pipeline
    with pytest.raises(error, match=expected):
        run_pipeline(_api_frames(), **kwargs)


@pytest.mark.parametrize("name", ["mip_threshold", "split_threshold"])
def test_vfaint_filter_none_threshold_is_named(name):
    from xcrfilter import vfaint_filter
    with pytest.raises(TypeError, match=name):
        vfaint_filter(_api_frames(), **{name: None})


def test_read_events_bad_files_name_the_file(tmp_path):
    import astropy.units as u

    from xcrfilter import run_pipeline
    from xcrfilter.io.eventfile import read_events, write_events
    events = run_pipeline(_api_frames(), "vfaint")
    good = tmp_path / "ev.fits"
    write_events(events, good)
    raw = good.read_bytes()
    (tmp_path / "text.fits").write_text("not a FITS file\n")
    (tmp_path / "cut_header.fits").write_bytes(raw[:5000])
    (tmp_path / "cut_data.fits").write_bytes(raw[:2880 * 4])
    (tmp_path / "adir.fits").mkdir()
    cases = [("text.fits", OSError, "not a readable FITS file"),
             ("cut_header.fits", OSError, "truncated or corrupt"),
             ("cut_data.fits", OSError, "truncated"),
             ("adir.fits", ValueError, "is a directory")]
    for name, error, match in cases:
        with pytest.raises(error, match=match) as info:
            read_events(tmp_path / name)
        assert name in str(info.value)
    assert read_events(good)["ENERGY"].unit == u.eV


def test_phas_options_on_image_frames_warn(files, tmp_path):
    from astropy.utils.exceptions import AstropyUserWarning
    out = str(tmp_path / "ev.fits")
    with pytest.warns(AstropyUserWarning, match="--phas-order and --phas-unit apply to event "
                      "lists and pixel tables; ignored for the image frames"):
        assert main(["filter", files["good"], "-q", "-o", out, "--phas-order", "centre-first",
                     "--phas-unit", "keV"]) == 0


def test_messages_read_as_english(files, tmp_path, capsys):
    """'frames frames are 3 x 3 pixels' and 'sac need the frames' were garbled."""
    assert main(["filter", files["tiny"], "-o", str(tmp_path / "a.fits")]) == 1
    err = capsys.readouterr().err
    assert "frames frames" not in err and "the frames are 3 x 3 pixels" in err
    assert main(["filter", files["evstr"], "-m", "vfaint,sac", "-o",
                 str(tmp_path / "b.fits")]) == 1
    assert "(sac needs the frames)" in capsys.readouterr().err
    assert main(["filter", files["evstr"], files["evnophas"], "-o",
                 str(tmp_path / "c.fits")]) == 1
    assert "use --output-dir" in capsys.readouterr().err
