"""Start a local visdom server that needs no network: `python -m util.visdom_server -port 8097`.

`python -m visdom.server` first downloads its JavaScript/CSS (unpkg, cdn.plot.ly, cdnjs) and crashes
offline (the MathJax step raises). This entry point runs the same server without that step. With
tornado >= 6.6 visdom's page answers 403 (its template asks tornado to version "../user/style.css",
which tornado 6.6 refuses); here a static-file handler that leaves such files unversioned avoids it.
Requests are still checked against the static folder when served. Other arguments go to visdom.
Offline the page stays blank (its scripts are missing) while the server stores and serves the data;
`python -m util.visdom_server --fetch_scripts` installs the scripts once from the npm registry.
"""
from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# files the visdom page loads; present only after visdom's own download step ran once with network
PAGE_SCRIPTS = ("js/jquery.min.js", "js/react-react.min.js", "js/plotly-plotly.min.js")


def is_local(server: str) -> bool:
    """True when --display_server names this machine (the only place we start a server)."""
    return (urlparse(server).hostname or server) in LOCAL_HOSTS


def answers(server: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when an HTTP server (any status) answers at server:port."""
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a proxy must not answer for us
        direct.open(f"{server}:{port}/", timeout=timeout_s).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered, if with an error page
    except OSError:
        return False


def missing_page_scripts() -> list[str]:
    """visdom's browser-side files that are absent (the page then stays blank; the data is still served)."""
    try:
        from visdom.utils.shared_utils import get_visdom_path
    except ImportError:
        return list(PAGE_SCRIPTS)
    static = Path(get_visdom_path("static"))
    return [name for name in PAGE_SCRIPTS if not (static / name).is_file()]


def launch(port: int, env_path: str | Path, log_path: str | Path, wait_s: float = 20.0) -> subprocess.Popen:
    """Start the server on 127.0.0.1:port in its own session (it outlives the training run, as a server
    started by hand would) and wait until it answers; raises RuntimeError with the log's tail otherwise."""
    Path(env_path).mkdir(parents=True, exist_ok=True)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "util.visdom_server", "-port", str(port),
                                 "-env_path", str(env_path), "-bind_local", "-logging_level", "WARNING"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if answers("http://127.0.0.1", port, timeout_s=0.5):
            return proc
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    tail = Path(log_path).read_text(errors="replace").splitlines()[-5:]
    raise RuntimeError(f"the visdom server did not start on port {port} (log {log_path}: {' | '.join(tail)})")


# visdom 0.2.4's page files, from the npm registry (the CDNs visdom downloads from may be unreachable):
# package@version -> {file in the package tarball: file under visdom's static folder}
NPM_FILES = {
    "jquery@3.1.1": {"dist/jquery.min.js": "js/jquery.min.js"},
    "bootstrap@3.3.7": {"dist/js/bootstrap.min.js": "js/bootstrap.min.js",
                        "dist/css/bootstrap.min.css": "css/bootstrap.min.css",
                        **{f"dist/fonts/glyphicons-halflings-regular.{ext}": f"fonts/glyphicons-halflings-regular.{ext}"
                           for ext in ("eot", "woff2", "woff", "ttf", "svg")}},
    "react@16.2.0": {"umd/react.production.min.js": "js/react-react.min.js"},
    "react-dom@16.2.0": {"umd/react-dom.production.min.js": "js/react-dom.min.js"},
    "react-modal@3.1.10": {"dist/react-modal.min.js": "js/react-modal.min.js"},
    "plotly.js-dist-min@2.11.1": {"plotly.min.js": "js/plotly-plotly.min.js"},
    "sjcl@1.0.7": {"sjcl.js": "js/sjcl.js"},
    "layout-bin-packer@1.4.0": {"dist/layout-bin-packer.js": "js/layout_bin_packer.js",
                                "dist/layout-bin-packer.js.map": "js/layout-bin-packer.js.map"},
    "d3@3.5.17": {"d3.min.js": "js/d3.v3.min.js"},
    "d3-selection-multi@1.0.1": {"build/d3-selection-multi.js": "js/d3-selection-multi.v1.js"},
    "save-svg-as-png@1.4.17": {"lib/saveSvgAsPng.js": "js/saveSvgAsPng.js"},
    "react-resizable@1.4.6": {"css/styles.css": "css/react-resizable-styles.css"},
    "react-grid-layout@0.16.3": {"css/styles.css": "css/react-grid-layout-styles.css"},
}
NPM_REGISTRY = "https://registry.npmjs.org"


def fetch_page_scripts(registry: str = NPM_REGISTRY) -> list[str]:
    """Put visdom's browser files into its static folder from npm tarballs (needs network once; training
    never calls this). Returns the files written. MathJax (formulas in text windows) is left out."""
    import io
    import tarfile

    from visdom.utils.shared_utils import get_visdom_path

    static = Path(get_visdom_path("static"))
    written = []
    for spec, files in NPM_FILES.items():
        name, version = spec.rsplit("@", 1)
        url = f"{registry}/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"
        print(f"fetching {url}")
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (fixed registry URL)
            archive = tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:gz")
        for member, target in files.items():
            data = archive.extractfile(f"package/{member}").read()
            path = static / target
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            written.append(target)
    return written


def _tolerate_outside_static_versions() -> None:
    """tornado >= 6.6: static_url() of a file outside the static folder raises 403; give it no version."""
    from tornado import web

    original = web.StaticFileHandler.get_version.__func__

    class VisdomStaticFiles(web.StaticFileHandler):
        @classmethod
        def get_version(cls, settings, path):
            try:
                return original(cls, settings, path)
            except web.HTTPError:
                return None

    from visdom.server import app
    init = app.Application.__init__

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.settings["static_handler_class"] = VisdomStaticFiles

    # visdom builds its settings inside __init__; the handler class is read on each static_url call
    app.Application.__init__ = patched_init


def main(argv: list[str] | None = None) -> None:
    """visdom.server's own main, without the download step; `--fetch_scripts` only installs the page files."""
    from visdom.server import run_server

    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--fetch_scripts"]:
        print(f"wrote {len(fetch_page_scripts())} files into visdom's static folder")
        return

    _tolerate_outside_static_versions()
    sys.argv = [sys.argv[0]] + args
    run_server.main()


if __name__ == "__main__":
    main()
