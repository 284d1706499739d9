"""Memory stays bounded on saturated frames (peak RSS of a child process, Linux)."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from astropy.io import fits


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="peak memory read from /proc/self/status")


def _peak_rss_mb(code):
    """Run ``code`` in a fresh interpreter; return its peak resident set size [MB]."""
    # VmHWM (the peak of this process image; ru_maxrss would keep the peak of the
    # parent across fork + exec)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code) + textwrap.dedent("""
        hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
        print("PEAK", hwm.split()[1])
        """)], capture_output=True, text=True, check=True).stdout
    kib = int(out.split("PEAK")[-1].split()[0])
    return kib / 1024


def test_find_events_on_saturated_frames():
    """16 saturated 512 x 512 frames: one event each, far below 1.5 GB (was 3.7 GB)."""
    peak = _peak_rss_mb("""
        import numpy as np, astropy.units as u
        from xcrfilter import find_events
        ev = find_events(np.full((16, 512, 512), 2e5, np.float32) * u.eV)
        assert len(ev) == 16, len(ev)
        """)
    assert peak < 600


def test_filter_command_on_saturated_frames(tmp_path):
    path = tmp_path / "saturated.fits"
    hdu = fits.PrimaryHDU(np.full((16, 512, 512), 2e5, np.float32))
    hdu.header["BUNIT"] = "eV"
    hdu.writeto(path)
    peak = _peak_rss_mb(f"""
        from xcrfilter.cli.main import main
        assert main(["filter", {str(path)!r}, "-q", "-m", "vfaint,sac",
                     "-o", {str(tmp_path / 'ev.fits')!r},
                     "--mask-output", {str(tmp_path / 'mask.fits')!r}]) == 0
        """)
    assert peak < 1536
