"""The issue's "done when": a new user builds the wheel, installs it into an empty virtualenv,
starts the reference server and runs the SPEC section 3 example unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from support.servers import TEST_KEY, ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def test_wheel_is_pure_python_with_platform_markers(built: Path) -> None:
    (wheel,) = built.glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    assert list(built.glob("circle_ws_web-*.tar.gz"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(zf.read(n).decode() for n in names if n.endswith("METADATA"))
    assert "circle_ws_web/py.typed" in names
    assert "circle_ws_web/transports/browser.py" in names and "circle_ws_web/server/app.py" in names
    assert not any(n.endswith((".so", ".pyd")) for n in names)
    assert "Requires-Dist: ecdsa" in meta
    assert "Requires-Dist: websockets>=13.0; sys_platform != 'emscripten'" in meta
    assert "Provides-Extra: fast" in meta and "Provides-Extra: server" in meta


def test_spec_example_runs_from_a_fresh_venv(built: Path, tmp_path: Path) -> None:
    (wheel,) = built.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{wheel}[server]"], check=True, capture_output=True, timeout=300
    )
    port = free_port()
    server = ServerProcess(port, require_auth=True, python=str(py))
    server.start()
    try:
        example = textwrap.dedent(
            f"""
            import asyncio
            from circle_ws_web import ws_manager

            async def main():
                manager = (ws_manager()
                    .private_key("{TEST_KEY}")
                    .add_server_url("ws://127.0.0.1:{port}")
                    .build())
                await manager.connect()
                result = await manager.execute_script("ws://127.0.0.1:{port}", "40 + 2")
                print(result.output)
                print(manager.connection_statuses())
                await manager.disconnect_all()

            asyncio.run(main())
            """
        )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run([str(py), "-c", example], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "42"
        assert "CONNECTED" in lines[1] or "connected" in lines[1]
        where = subprocess.run(
            [str(py), "-c", "import circle_ws_web; print(circle_ws_web.__file__)"], capture_output=True, text=True, env=env, cwd=tmp_path
        ).stdout
        assert str(venv) in where  # the installed wheel, not the source tree
    finally:
        server.stop()
