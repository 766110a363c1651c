"""Kafka UI in the browser: kaskade (a Kafka UI built on Textual) served by textual-serve.

    /                 kaskade admin: topics with partitions, end offsets, groups and lag;
                      create, edit and delete topics; topic configs
    /topic/NAME       kaskade consumer: the messages of topic NAME from the earliest offset,
                      with keys, values, partitions, offsets and headers

    python -m purchase_analytics.runtime.kafka_ui --bootstrap-servers localhost:9092 --port 8083

Each browser tab gets its own kaskade process; the runtime starts this server in its own
process group (runtime.web_service) so that stopping it stops them all.
"""

from __future__ import annotations

import argparse
import contextvars
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

from ..config import load_security
from ..kafka_client import KafkaSecurity

MODULE = "purchase_analytics.runtime.kafka_ui"
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")  # Kafka's legal topic names
_command = contextvars.ContextVar("kaskade_command")


def kaskade_command(bootstrap_servers: str, topic: str | None = None, config_file: Path | None = None) -> str:
    """The shell command textual-serve runs for one tab: admin mode, or consumer mode for a topic."""
    kaskade = shlex.quote(str(Path(sys.executable).parent / "kaskade"))
    common = f"-b {shlex.quote(bootstrap_servers)}" + (f" --config-file {shlex.quote(str(config_file))}" if config_file else "")
    if topic is None:
        return f"exec {kaskade} admin {common} --refresh-interval 5"
    return f"exec {kaskade} consumer {common} -t {shlex.quote(topic)} --earliest -k string -v string --fallback encoding=escaped"


class _OfflineTemplates(jinja2.FileSystemLoader):
    """textual-serve's page template without its one external link (a web font from a CDN,
    which fails offline anyway): the page loads only what the wheels ship."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        return re.sub(r'<link[^>]*href="https?://[^"]*"[^>]*>', "", source, flags=re.S), filename, uptodate


def write_client_config(security: KafkaSecurity) -> Path | None:
    """kaskade's client settings (TLS, SASL) as an INI file only this user can read, in a
    private folder; None for a plaintext broker. The password never goes on a command line."""
    settings = security.confluent_config()
    if settings == {"security.protocol": "PLAINTEXT"}:
        return None
    folder = Path(tempfile.mkdtemp(prefix="kafka-ui-"))  # mode 0700
    path = folder / "client.ini"
    path.touch(mode=0o600)
    path.write_text("[kafka]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
    return path


class KafkaUiServer(Server):
    """textual-serve with one route per view; the view's command is chosen per request."""

    def __init__(self, bootstrap_servers: str, host: str, port: int, public_url: str | None = None, config_file: Path | None = None):
        super().__init__(
            kaskade_command(bootstrap_servers, config_file=config_file),
            host=host,
            port=port,
            title="Kafka UI (kaskade)",
            public_url=public_url,
        )
        self.bootstrap_servers = bootstrap_servers
        self.config_file = config_file

    @property
    def command(self) -> str:
        return _command.get(self._admin_command)

    @command.setter
    def command(self, value: str) -> None:
        self._admin_command = value

    def _topic(self, request: web.Request) -> str | None:
        topic = request.match_info.get("topic")
        if topic is not None and not TOPIC_NAME.match(topic):
            raise web.HTTPNotFound(text=f"not a Kafka topic name: {topic!r}")
        return topic

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        aiohttp_jinja2.get_env(app).loader = _OfflineTemplates(self.templates_path)
        app.router.add_get("/topic/{topic}", self.handle_index)
        app.router.add_get("/ws/topic/{topic}", self.handle_websocket)
        return app

    @aiohttp_jinja2.template("app_index.html")
    async def handle_index(self, request: web.Request) -> dict:
        topic = self._topic(request)
        context = await Server.handle_index.__wrapped__(self, request)
        if topic is not None:
            context["app_websocket_url"] = context["app_websocket_url"].replace("/ws", f"/ws/topic/{topic}", 1)
            context["application"] = {"name": f"Kafka UI: topic {topic}"}
        return context

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        topic = self._topic(request)
        if topic is not None:
            _command.set(kaskade_command(self.bootstrap_servers, topic, self.config_file))  # this request's task only
        return await super().handle_websocket(request)


def start_args(bootstrap_servers: str, port: int, host: str = "127.0.0.1", public_url: str | None = None) -> list[str]:
    """The command-line arguments of this module, for runtime.web_service.WebService.start."""
    args = ["--bootstrap-servers", bootstrap_servers, "--host", host, "--port", str(port)]
    return args + (["--public-url", public_url] if public_url else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-url", default=None, help="the URL browsers use, when it differs from http://HOST:PORT (Docker)")
    args = parser.parse_args(argv)
    config_file = write_client_config(load_security())  # KAFKA_SECURITY_PROTOCOL and friends, as every client reads them
    try:
        KafkaUiServer(args.bootstrap_servers, args.host, args.port, args.public_url, config_file).serve()
    except OSError as exc:
        print(f"error: Kafka UI cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        if config_file:
            shutil.rmtree(config_file.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
