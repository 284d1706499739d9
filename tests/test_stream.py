"""Streaming input and outputs: chunked reading, many files, masks, bounded memory, dask."""
import os
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from xcrfilter.cli.main import main
from xcrfilter.io.frames import as_energy_cube
from xcrfilter.io.eventfile import read_events
from xcrfilter.io.maskfile import MaskWriter, read_mask
from xcrfilter.io.masks import mask_events
from xcrfilter.execution import work_pieces
from xcrfilter.pipeline import available_methods, run_pipeline
from xcrfilter.simulate import SimulationParameters, simulate_frames
from xcrfilter.io.stream import FrameStream, frames_per_chunk


@pytest.fixture(scope="module")
def sim():
    return simulate_frames(12, seed=7, shape=(96, 96),
                           params=SimulationParameters(cr_rate=2.0, xray_rate=6.0))


def _write(path, data, bunit="eV", mask=None, **cards):
    hdu = fits.PrimaryHDU(data)
    hdu.header["BUNIT"] = bunit
    for key, value in cards.items():
        hdu.header[key] = value
    hdus = [hdu]
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), name="MASK"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture(scope="module")
def files(sim, tmp_path_factory):
    """The simulated frames as one file and split over three files (5 + 1 + 6 frames)."""
    d = tmp_path_factory.mktemp("stream")
    frames = np.asarray(sim.frames, np.float32)
    whole = _write(d / "whole.fits", frames)
    parts = [_write(d / "p1.fits", frames[:5]), _write(d / "p2.fits", frames[5]),
             _write(d / "p3.fits", frames[6:])]
    return whole, parts


def test_chunked_reading_equals_whole_reading(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(0, 30, (7, 24, 20))
    mask = rng.random((7, 24, 20)) < 0.02
    values[2, 3, 4] = np.nan
    cases = {
        "ev": _write(tmp_path / "ev.fits", values.astype(np.float32), mask=mask),
        # scaled integers (BZERO) in adu with a bias offset and a gain keyword
        "adu": _write(tmp_path / "adu.fits",
                      np.round(np.nan_to_num(values) / 3.65 + 100).astype(np.int16),
                      bunit="adu", GAIN=3.65, ADUOFFS=100.0, BZERO=10),
        "one2d": _write(tmp_path / "one.fits", values[0].astype(np.float32), bunit="keV"),
    }
    for name, path in cases.items():
        with pytest.warns() if name == "ev" else _nowarn():
            whole = as_energy_cube(path)
        for chunk in (1, 3, 7, 50):
            with pytest.warns() if name == "ev" else _nowarn():
                stream = FrameStream(path, chunk_frames=chunk)
                blocks = list(stream)
            assert stream.n_frames == whole.data.shape[0]
            assert all(b.data.shape[0] <= chunk for b in blocks)
            np.testing.assert_array_equal(np.concatenate([b.data for b in blocks]), whole.data)
            np.testing.assert_array_equal(np.concatenate([b.mask for b in blocks]), whole.mask)
            assert all(b.header is stream.header for b in blocks)
    # three files as one observation, in the given order
    paths = [cases["ev"], cases["one2d"], cases["ev"]]
    with pytest.warns():
        whole = as_energy_cube(paths)
        stream = FrameStream(paths, chunk_frames=4)
        data = np.concatenate([b.data for b in stream])
    np.testing.assert_array_equal(data, whole.data)
    assert stream.ranges() == [(0, 4), (4, 7), (7, 8), (8, 12), (12, 15)]  # never across files
    assert list(stream.offsets) == [0, 7, 8, 15]
    assert list(stream.file_index([0, 6, 7, 8, 14])) == [0, 0, 1, 2, 2]


class _nowarn:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def test_stream_errors(tmp_path):
    a = _write(tmp_path / "a.fits", np.zeros((3, 10, 10), np.float32))
    b = _write(tmp_path / "b.fits", np.zeros((3, 10, 12), np.float32))
    with pytest.raises(ValueError, match="same frame shape"):
        FrameStream([a, b])
    with pytest.raises(FileNotFoundError):
        FrameStream(tmp_path / "missing.fits")
    with pytest.raises(ValueError, match="empty list"):
        FrameStream([])
    with pytest.raises(ValueError, match="not within one input file"):
        FrameStream([a, a]).read(2, 4)
    # the pixel bound: 200 frames of 512 x 512, fewer of larger frames
    assert frames_per_chunk((512, 512)) == 200
    assert frames_per_chunk((2048, 2048)) == 12
    assert frames_per_chunk((10, 10), 7, None) == 7


def test_pipeline_streams_files_as_one_observation(sim, files):
    whole, parts = files
    ref = run_pipeline(np.asarray(sim.frames) * u.eV, "vfaint,sac")
    for source in (whole, parts):
        got = run_pipeline(source, "vfaint,sac", chunk_frames=4)
        assert got.meta["NFRAMES"] == 12
        for col in ("FRAME", "RAWX", "RAWY", "ENERGY", "STATUS"):
            np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(ref[col]))


def test_cli_many_files_one_observation(files, tmp_path, capsys):
    whole, parts = files
    one, many = tmp_path / "one.fits", tmp_path / "many.fits"
    m1, m3 = tmp_path / "m1.fits", tmp_path / "m3.fits"
    assert main(["filter", str(whole), "-q", "-o", str(one), "--mask-output", str(m1),
                 "--chunk-frames", "5"]) == 0
    assert main(["filter", *map(str, parts), "-q", "-o", str(many), "--mask-output", str(m3),
                 "--chunk-frames", "5"]) == 0
    a, b = read_events(one), read_events(many)
    assert len(a) == len(b) > 20
    for col in ("FRAME", "RAWX", "RAWY", "PHAS", "STATUS"):
        np.testing.assert_array_equal(np.asarray(a[col]), np.asarray(b[col]))
    assert b["FRAME"].max() >= 6          # FRAME continues over the files
    assert b.meta["NINFILES"] == 3
    assert [b.meta[f"INFRM0{i}"] for i in (1, 2, 3)] == [0, 5, 6]
    assert b.meta["INFILE02"].endswith("p2.fits")
    # the compact masks are equal, and equal to mask_events on the whole cube
    ref = mask_events(whole, a, which="rejected").mask
    np.testing.assert_array_equal(read_mask(m1), ref)
    np.testing.assert_array_equal(read_mask(m3), ref)


def test_mask_file_is_compact_and_readable(files, tmp_path, capsys):
    whole, _ = files
    mask = tmp_path / "mask.fits"
    assert main(["filter", str(whole), "-q", "-o", str(tmp_path / "ev.fits"),
                 "--mask-output", str(mask), "--chunk-frames", "5"]) == 0
    with fits.open(mask) as hdul:
        assert hdul[0].data is None                       # no copy of the frames
        exts = [h for h in hdul[1:] if h.name == "MASK"]
        assert [h.header["FRAME0"] for h in exts] == [0, 5, 10]
        assert [h.header["EXTVER"] for h in exts] == [1, 2, 3]
        assert all(isinstance(h, fits.CompImageHDU) for h in exts)
        assert exts[0].data.dtype == np.uint8 and exts[0].data.shape == (5, 96, 96)
    assert os.path.getsize(mask) < os.path.getsize(whole) / 10
    ccd = CCDData.read(mask, hdu=1, unit=u.dimensionless_unscaled)
    assert ccd.shape == (5, 96, 96)
    np.testing.assert_array_equal(ccd.data != 0, read_mask(mask)[:5])


def test_mask_writer_is_atomic(tmp_path):
    path = tmp_path / "m.fits"
    with pytest.raises(RuntimeError):
        with MaskWriter(path, (8, 8)):
            assert (tmp_path / "m.fits.part").exists() and not path.exists()
            raise RuntimeError("killed")
    assert not path.exists() and not (tmp_path / "m.fits.part").exists()


def test_work_pieces_bound_active_pixels(sim):
    frames = np.asarray(sim.frames, np.float32).copy()
    frames[[2, 3, 7]] = 20000.0                                   # saturated frames
    cube = as_energy_cube(frames * u.eV)
    pieces = work_pieces(cube, 260 * u.eV, max_active=96 * 96 + 500)
    starts = [a for a, _ in pieces]
    sizes = [p.data.shape[0] for _, p in pieces]
    assert sum(sizes) == 12 and starts[0] == 0
    for a, p in pieces:   # a saturated frame shares its piece with no other saturated frame
        assert np.count_nonzero(p.data.reshape(len(p.data), -1).min(axis=1) > 1e4) <= 1
    assert len(pieces) >= 3
    ref = run_pipeline(frames * u.eV, "vfaint,sac")
    got = run_pipeline(frames * u.eV, "vfaint,sac", max_active_pixels=96 * 96 + 500)
    for col in ("FRAME", "RAWX", "RAWY", "STATUS"):
        np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(ref[col]))


_MEMORY = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from astropy.io import fits
    from xcrfilter.cli.main import main

    def peak():
        # VmHWM: peak RSS of this process image (ru_maxrss also counts the
        # parent's pages at fork time on Linux)
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    path, out, chunk = sys.argv[1], sys.argv[2], sys.argv[3]
    small = out + ".small.fits"
    fits.PrimaryHDU(np.zeros((2, 512, 512), np.float32), header=fits.Header(
        [("BUNIT", "eV")])).writeto(small)
    main(["filter", small, "-q", "-o", out + ".warm", "--chunk-frames", chunk])
    before = peak()
    main(["filter", path, "-q", "-o", out, "--mask-output", out + ".mask",
          "--chunk-frames", chunk] + sys.argv[4:])
    print(peak() - before)
""")


def _big_file(path, n_frames, value=None):
    """A float32 eV cube of ``n_frames`` 512 x 512 frames, written a block at a time."""
    header = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 3), ("NAXIS1", 512),
                          ("NAXIS2", 512), ("NAXIS3", n_frames), ("BUNIT", "eV")])
    out = fits.StreamingHDU(path, header)
    rng = np.random.default_rng(0)
    for a in range(0, n_frames, 16):
        block = rng.normal(0, 20, (min(16, n_frames - a), 512, 512)).astype(">f4")
        if value is not None:
            block[:] = value
        out.write(block)
    out.close()
    return path


def _peak_growth(path, tmp_path, chunk):
    proc = subprocess.run([sys.executable, "-c", _MEMORY, str(path), str(tmp_path / "ev.fits"),
                           str(chunk)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_memory_bounded_by_chunk_not_file(tmp_path):
    """Peak memory of filtering a 320 MB file in 16-frame (17 MB) chunks."""
    path = _big_file(tmp_path / "big.fits", 320)
    size = os.path.getsize(path)
    growth = _peak_growth(path, tmp_path, 16)
    # reading the cube at once would take at least the file size (twice before streaming)
    assert growth < size / 4, (growth, size)


def test_memory_bounded_on_saturated_frames(tmp_path):
    """16 saturated 512 x 512 frames: pieces of bounded work (3.7 GB unsplit, measured)."""
    path = _big_file(tmp_path / "sat.fits", 16, value=20000.0)
    growth = _peak_growth(path, tmp_path, 200)
    assert growth < 1.2e9, growth


@pytest.mark.parametrize("methods", ["vfaint,sac", "vfaint,cam"])
def test_dask_equals_serial(files, methods):
    import distributed  # in the test extra
    assert "cam" in available_methods()   # the CAM model ships with the package
    whole, parts = files
    serial = run_pipeline(parts, methods, chunk_frames=3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = run_pipeline(parts, methods, chunk_frames=3, client=client)
        in_memory = run_pipeline(np.asarray(fits.getdata(whole)) * u.eV, methods,
                                 chunk_frames=3, client=client)
    assert len(serial) > 20
    for got in (on_dask, in_memory):
        assert got.colnames == serial.colnames
        for col in serial.colnames:
            np.testing.assert_array_equal(np.asarray(got[col]), np.asarray(serial[col]))
        for key in ("NFRAMES", "FILTERS", "CAMNREJ", "SACNREJ"):
            if key in serial.meta:
                assert got.meta[key] == serial.meta[key]


def test_cli_scheduler_equals_serial(files, tmp_path, capsys):
    import distributed  # in the test extra
    _, parts = files
    serial, remote = tmp_path / "serial.fits", tmp_path / "remote.fits"
    args = ["filter", *map(str, parts), "-q", "-m", "vfaint,sac", "--chunk-frames", "4"]
    assert main(args + ["-o", str(serial)]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        assert main(args + ["-o", str(remote), "--scheduler", cluster.scheduler_address]) == 0
    a, b = read_events(serial), read_events(remote)
    assert len(a) > 20
    for col in ("FRAME", "RAWX", "RAWY", "PHAS", "STATUS"):
        np.testing.assert_array_equal(np.asarray(b[col]), np.asarray(a[col]))
    with pytest.raises(SystemExit):
        main(args + ["-o", str(tmp_path / "x.fits"), "--workers", "2", "--scheduler", "x"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_output_dir_one_file_per_input(files, tmp_path, capsys):
    """--output-dir: every input its own observation and event file, as filtered alone."""
    _, parts = files
    out = tmp_path / "events"
    args = ["filter", *map(str, parts), "-q", "-m", "vfaint,sac"]
    assert main(args + ["--output-dir", str(out)]) == 0
    names = ["p1_events.fits", "p2_events.fits", "p3_events.fits"]
    assert sorted(p.name for p in out.iterdir()) == names
    for part in parts:
        alone = tmp_path / f"alone_{part.name}"
        assert main(["filter", str(part), "-q", "-m", "vfaint,sac", "-o", str(alone)]) == 0
        a, b = read_events(alone), read_events(out / part.name.replace(".fits", "_events.fits"))
        assert b.meta["NFRAMES"] == a.meta["NFRAMES"] == FrameStream(part).n_frames
        for col in ("FRAME", "RAWX", "RAWY", "PHAS", "STATUS"):
            np.testing.assert_array_equal(np.asarray(b[col]), np.asarray(a[col]))
    # refused before any work: the same name twice, a mask file, -o as well
    twin = tmp_path / "twin"
    twin.mkdir()
    copy = twin / parts[0].name
    copy.write_bytes(parts[0].read_bytes())
    empty = tmp_path / "empty"
    assert main(["filter", str(parts[0]), str(copy), "-q", "--output-dir", str(empty)]) == 1
    assert "same file" in capsys.readouterr().err and not list(empty.iterdir())
    assert main(args + ["--output-dir", str(empty), "--mask-output",
                        str(tmp_path / "m.fits")]) == 1
    assert "--output-dir" in capsys.readouterr().err and not list(empty.iterdir())
    with pytest.raises(SystemExit):
        main(args + ["--output-dir", str(empty), "-o", str(tmp_path / "x.fits")])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i2", ">i4", "u1"])
def test_mapped_reads_equal_astropy(tmp_path, dtype):
    """Plain images are read through a memory map, a few frames at a time: same values."""
    from xcrfilter.io.stream import MAPPED_FRAMES
    rng = np.random.default_rng(3)
    values = (rng.random((2 * MAPPED_FRAMES + 3, 9, 11)) * 200).astype(dtype)
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(values, fits.Header([("BUNIT", "adu"), ("GAIN", 3.5)])).writeto(path)
    stream = FrameStream(path, chunk_frames=7)
    assert stream.sources[0].raw is not None
    got = np.concatenate([stream.read(a, b).data for a, b in stream.ranges()])
    np.testing.assert_array_equal(got, values.astype(np.float64).astype(np.float32) * 3.5)
    # scaled, compressed or gzipped images are read by astropy
    scaled = tmp_path / "scaled.fits"
    # unsigned 16-bit: stored as int16 with BZERO = 32768
    fits.PrimaryHDU(values[:3].astype(np.uint16),
                    fits.Header([("BUNIT", "adu"), ("GAIN", 3.5)])).writeto(scaled)
    packed = tmp_path / "packed.fits.gz"
    fits.PrimaryHDU(values[:3], fits.Header([("BUNIT", "adu"), ("GAIN", 3.5)])).writeto(packed)
    for other in (scaled, packed):
        assert FrameStream(other).sources[0].raw is None
        np.testing.assert_array_equal(FrameStream(other).read(0, 3).data,
                                      as_energy_cube(other).data)


@pytest.mark.parametrize("option", [["--workers", "2"], ["--scheduler", "tcp://host:8786"]])
def test_missing_distributed_is_one_line(files, tmp_path, capsys, monkeypatch, option):
    """Without dask.distributed, --workers and --scheduler fail with one clear line."""
    monkeypatch.setitem(sys.modules, "distributed", None)   # import distributed fails
    _, parts = files
    out = tmp_path / "ev.fits"
    assert main(["filter", *map(str, parts), "-q", "-o", str(out), *option]) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "xcrfilter filter: error: --workers and --scheduler need dask.distributed: pip install "
        "'dask[distributed]' (a missing optional dependency; see the installation notes)."]
    assert "Traceback" not in captured.err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cam_maps_appended_per_chunk(sim, tmp_path):
    assert "cam" in available_methods()   # the CAM model ships with the package
    from xcrfilter.filters.cam import cam_maps
    from xcrfilter.io.products import read_cam_maps
    frames = np.asarray(sim.frames[:5], np.float32) * u.eV
    out = tmp_path / "maps.fits"
    run_pipeline(frames, "cam", chunk_frames=2, options={"cam": {"cam_output": out}})
    maps, header = read_cam_maps(out)
    ref = cam_maps(frames)
    assert set(maps) == {"XRAY", "CR"} and header["NCAMMAPS"] == 2
    for name in maps:
        assert maps[name].shape == (5, 96, 96)
        np.testing.assert_allclose(maps[name], ref[name], atol=1e-6)
    with fits.open(out) as hdul:
        hdul.verify("exception")
        assert hdul["CAM_CR"].header["CLASSNAM"] == "CR"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.fits"]   # no side files
    # a run that fails half way leaves no map file and no side files
    bad = tmp_path / "bad.fits"

    def explode(start, n, events):
        if start >= 2:
            raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        run_pipeline(frames, "cam", chunk_frames=2, on_chunk=explode,
                     options={"cam": {"cam_output": bad}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.fits"]
