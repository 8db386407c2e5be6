import os
import sys
import sysconfig

import pytest

from tritium.errors import UnavailableError
from tritium.serving.distribution import (
    check_numpy,
    current_python_version,
    find_distribution,
    prepare_backend_dir,
    server_environment,
)


def test_backend_dir_links_the_stub_for_this_python_without_touching_site_packages(tmp_path):
    dist = find_distribution()
    before = sorted(p.name for p in dist.python_backend.iterdir())
    backend = prepare_backend_dir(dist, tmp_path / "backends")
    python_dir = backend / "python"
    assert (python_dir / "triton_python_backend_stub").resolve() == dist.stub(
        current_python_version()
    ).resolve()
    assert os.access(python_dir / "triton_python_backend_stub", os.X_OK)
    assert (python_dir / "libtriton_python.so").is_file()
    assert prepare_backend_dir(dist, tmp_path / "backends") == backend
    assert sorted(p.name for p in dist.python_backend.iterdir()) == before


def test_environment_puts_this_interpreter_and_its_libpython_first():
    dist = find_distribution()
    env = server_environment(dist, {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    libs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert libs[0] == sysconfig.get_config_var("LIBDIR") and libs[-1] == "/opt/x"
    assert str(dist.libs) in libs


def test_numpy_2_is_refused_before_anything_starts():
    check_numpy("1.26.4")  # the version nvidia-pytriton pins: fine
    with pytest.raises(UnavailableError, match=r"numpy 2\.1\.0 .*empty outputs") as info:
        check_numpy("2.1.0")
    assert "numpy<2" in info.value.hint
