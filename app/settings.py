"""Settings: one pydantic-settings class, validated once at start-up.

Sources, strongest first: CLI flags (passed in as a dict), ``VIPMON_*``
environment variables, then the config file (TOML or YAML). Of each pair in
:data:`ONE_OF` the strongest source that gives either wins and the other is
set aside, so an exported ``VIPMON_ADMIN_TOKEN`` does not fight
``--admin-token-file``. Timing is checked as a whole and refused with a message
naming the field; nothing is adjusted silently. Build the settings with
:func:`load_settings` and pass them in.
"""

from __future__ import annotations

import difflib
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from app.errors import SettingsError

_NODE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class Settings(BaseSettings):
    """Every setting of a node. Each is also ``--flag`` and ``VIPMON_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VIPMON_", extra="forbid", frozen=True)

    node_id: str = Field(default_factory=socket.gethostname, description="This node's id.")
    host: str = Field(default="0.0.0.0", description="Address the HTTP API listens on.")
    port: int = Field(default=8700, ge=1, le=65535, description="HTTP API port.")
    advertise_url: str | None = Field(
        default=None, description="URL peers and operators use; default http(s)://<host>:<port>."
    )
    backend: Literal["local", "etcd"] = Field(default="local", description="Coordination store.")
    etcd_endpoints: Annotated[list[str], NoDecode] = Field(
        default=["http://127.0.0.1:2379"], description="etcd client URLs, comma-separated."
    )
    etcd_username: str | None = None
    etcd_password: SecretStr | None = None
    etcd_ca_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None
    store_timeout: float | None = Field(
        default=None, gt=0, description="Per-request store timeout in s; default lease_ttl/4."
    )
    cluster: str = Field(default="vipmon", description="Cluster name: the key namespace.")
    lease_ttl: int = Field(default=2, ge=1, le=3600, description="Lease TTL in whole seconds.")
    lease_margin: float = Field(default=0.5, gt=0, description="Validity margin in s.")
    renew_interval: float | None = Field(
        default=None, gt=0, description="Seconds between keepalives; default lease_ttl/4."
    )
    state_dir: Path = Field(
        default=Path("/var/lib/vipmon"), description="Embedded store directory."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    agent_port: int | None = Field(
        default=None, ge=1, le=65535, description="TCP port of the HAProxy agent-check responder."
    )
    log_format: Literal["text", "json"] = Field(default="text", description="Log line format.")
    docs: bool = Field(default=False, description="Serve the API docs at /docs and /redoc.")

    # Day-two operation: admin API, priorities, drain, local checks, hooks.
    admin_token: SecretStr | None = Field(default=None, description="Bearer token of /admin.")
    admin_token_file: Path | None = Field(default=None, description="File holding that token.")
    allow_cidr: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default=[], description="Client networks allowed to use the API (repeatable)."
    )
    trusted_proxy: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default=[],
        description="Proxies whose X-Forwarded-For is believed (repeatable); default none.",
    )
    priority: int = Field(default=100, ge=0, le=1000, description="0: never master.")
    priority_delay: float = Field(
        default=0.2, ge=0, le=10, description="Campaign delay per higher-priority member, s."
    )
    failback: bool = Field(default=False, description="Hand the role back to a higher priority.")
    failback_hold: float = Field(default=30.0, ge=0, description="Minimum term before failback, s.")
    drain_time: float = Field(
        default=0.0, ge=0, le=600, description="ROLE=DRAINING before a planned release, s."
    )
    switchover_timeout: float = Field(default=30.0, gt=0, le=600, description="Seconds.")
    settle_time: float = Field(
        default=0.01,
        ge=0,
        le=5,
        description="Planned release: s between turning negative and deleting the key.",
    )
    check_http: str | None = Field(default=None, description="Local health check: GET this URL.")
    check_tcp: str | None = Field(default=None, description="Local health check: HOST:PORT.")
    check_command: str | None = Field(default=None, description="Local health check: command.")
    check_interval: float = Field(default=2.0, gt=0, le=3600)
    check_timeout: float = Field(default=1.0, gt=0, le=3600)
    check_rise: int = Field(default=2, ge=1, le=100)
    check_fall: int = Field(default=2, ge=1, le=100)
    on_master: str | None = Field(default=None, description="Hook run on becoming master.")
    on_standby: str | None = Field(default=None, description="Hook run on leaving master.")
    on_change: str | None = Field(default=None, description="Hook run on every role change.")
    hook_timeout: float = Field(default=30.0, gt=0, le=3600, description="Seconds per hook.")
    member_forget_after: float = Field(
        default=604800.0,
        ge=0,
        le=31_536_000,
        allow_inf_nan=False,
        description="Seconds a missing member stays listed before the master forgets it "
        "(default 7 days); 0: only `vipmon member forget` does.",
    )

    # TLS on the HTTP API (the agent-check port stays plain TCP).
    tls_cert_file: Path | None = Field(default=None, description="API server certificate (PEM).")
    tls_key_file: Path | None = Field(default=None, description="Its private key (PEM).")
    tls_client_ca_file: Path | None = Field(
        default=None, description="CA that must have signed client certificates (PEM)."
    )
    tls_client_auth: Literal["all", "admin"] = Field(
        default="all", description="Client certificate needed on every path, or on /admin only."
    )

    # The kernel fence (app.fence): only the lease holder accepts these ports.
    fence_port: Annotated[list[int], NoDecode] = Field(
        default=[],
        description="TCP port only the master accepts, by nftables (repeatable); default none.",
    )
    fence_established: Literal["reset", "keep"] = Field(
        default="reset",
        description="Established connections to a fenced port when the lease goes: "
        "reset them, or keep them (giving up the guarantee for them).",
    )
    tcp_monitor_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="TCP port that accepts connections only on the master "
        "(for load balancers that can only connect).",
    )

    _set_aside: tuple[str, ...] = PrivateAttr(default=())

    @property
    def set_aside(self) -> tuple[str, ...]:
        """One line per :data:`ONE_OF` setting a stronger source overrode, for an INFO log."""
        return self._set_aside

    @field_validator("etcd_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("etcd_endpoints")
    @classmethod
    def _check_endpoints(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one endpoint is needed")
        return [base_url(url) for url in value]

    @field_validator("fence_port", mode="before")
    @classmethod
    def _split_ports(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for part in value:
                if isinstance(part, str) and not part.isdigit():
                    raise ValueError(f"{part!r} is not a port number")
        return value

    @field_validator("fence_port")
    @classmethod
    def _check_ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 0 < port < 65536:
                raise ValueError(f"{port} is not a port in 1-65535")
        return sorted(set(value))

    @field_validator("allow_cidr", "trusted_proxy", mode="before")
    @classmethod
    def _split_cidrs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("check_tcp")
    @classmethod
    def _check_hostport(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    @field_validator("node_id", "cluster")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("advertise_url", "check_http")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _check_timing(self) -> Settings:
        ttl, margin = float(self.lease_ttl), self.lease_margin
        renew, timeout = self.effective_renew_interval, self.effective_store_timeout
        if margin >= ttl:
            raise ValueError(
                f"lease_margin: {margin} s leaves no validity in a {self.lease_ttl} s lease"
            )
        if renew + timeout >= ttl - margin:
            raise ValueError(
                f"lease_ttl: {self.lease_ttl} s leaves no room for renew_interval {renew} s "
                f"+ store_timeout {timeout} s + lease_margin {margin} s; "
                "raise lease_ttl or lower the others"
            )
        if self.check_timeout >= self.check_interval:
            raise ValueError(
                f"check_timeout: {self.check_timeout} s must be shorter than "
                f"check_interval {self.check_interval} s"
            )
        if self.admin_token is not None and self.admin_token_file is not None:
            raise ValueError("admin_token_file: give the token or the file, not both")
        if self.agent_port is not None and self.agent_port == self.port:
            raise ValueError(f"agent_port: {self.agent_port} is already the API port")
        if (self.etcd_cert_file is None) != (self.etcd_key_file is None):
            raise ValueError("etcd_cert_file: a client certificate needs etcd_key_file too")
        self._check_tls()
        self._check_fence()
        return self

    def _check_fence(self) -> None:
        own = {"port": self.port, "agent_port": self.agent_port}
        for name, port in own.items():
            if port in self.fence_port:
                raise ValueError(
                    f"fence_port: {port} is the {name}; a fenced API would refuse the "
                    "load balancer's probes on every standby"
                )
            if port is not None and port == self.tcp_monitor_port:
                raise ValueError(f"tcp_monitor_port: {port} is already the {name}")

    @property
    def fenced_ports(self) -> tuple[int, ...]:
        """Every port the fence holds: ``fence_port``, and the TCP monitor port with them."""
        if not self.fence_port:
            return ()
        extra = [self.tcp_monitor_port] if self.tcp_monitor_port is not None else []
        return tuple(sorted({*self.fence_port, *extra}))

    def _check_tls(self) -> None:
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ValueError("tls_cert_file: a server certificate needs tls_key_file too")
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file: a key needs tls_cert_file too")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file: client certificates need tls_cert_file too")
        if self.tls_client_auth == "admin" and self.tls_client_ca_file is None:
            raise ValueError("tls_client_auth: 'admin' needs tls_client_ca_file")

    @property
    def effective_renew_interval(self) -> float:
        return self.renew_interval if self.renew_interval is not None else self.lease_ttl / 4

    @property
    def effective_store_timeout(self) -> float:
        return self.store_timeout if self.store_timeout is not None else self.lease_ttl / 4

    @property
    def has_check(self) -> bool:
        return any((self.check_http, self.check_tcp, self.check_command))

    def read_admin_token(self) -> str | None:
        """The admin token, from the setting or its file; SettingsError if unusable."""
        if self.admin_token is not None:
            token = self.admin_token.get_secret_value().strip()
            field = "admin_token"
        elif self.admin_token_file is not None:
            field = "admin_token_file"
            try:
                token = self.admin_token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(field, f"cannot read {self.admin_token_file}: {exc}") from exc
        else:
            return None
        if len(token) < 16:
            raise SettingsError(field, "the token must have at least 16 characters")
        return token

    @property
    def effective_advertise_url(self) -> str:
        if self.advertise_url is not None:
            return self.advertise_url
        host = self.host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        elif ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.tls_cert_file is not None else "http"
        return f"{scheme}://{host}:{self.port}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)


def check_name(value: str) -> str:
    """A node id or cluster name, or ValueError saying which characters it may use."""
    if not value or len(value) > 63 or not set(value) <= _NODE_ID_CHARS:
        raise ValueError("use 1 to 63 characters from A-Z a-z 0-9 . _ -")
    return value


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) mapping of settings."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError("config", f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError("config", f"{path} is not valid: {exc}") from exc
    elif path.suffix in (".yaml", ".yml"):
        import yaml  # only for a YAML config file

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SettingsError("config", f"{path} is not valid: {exc}") from exc
    else:
        raise SettingsError("config", f"{path}: use a .toml, .yaml or .yml file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError("config", f"{path} must hold a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def base_url(url: str) -> str:
    """``scheme://host:port`` of an http(s) URL with no path or query; ValueError saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://host:port URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{url!r} has a bad port") from exc
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(
            f"{url!r} has a path; give {parts.scheme}://{parts.netloc}, "
            f"without {parts.path or '?' + parts.query}"
        )
    return f"{parts.scheme}://{parts.netloc}"


#: ``VIPMON_*`` names that are not settings but are known: the hooks' variables.
_OTHER_VARIABLES = frozenset({"ROLE", "PREVIOUS_ROLE", "TERM", "NODE", "REASON", "HOOK"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line per ``VIPMON_*`` variable that names no setting, with a near match if any."""
    known = {name.upper() for name in Settings.model_fields}
    lines = []
    for variable in sorted(environ):
        if not variable.upper().startswith("VIPMON_"):
            continue
        name = variable[len("VIPMON_") :].upper()
        if name in known or name in _OTHER_VARIABLES:
            continue
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean VIPMON_{near[0]}?" if near else ""
        lines.append(f"environment variable {variable} names no setting and is ignored{hint}")
    return lines


#: Settings of which a node takes one: of each pair, the strongest source that gives either
#: wins and the other, from a weaker source, is set aside; both from one source is an error.
ONE_OF = (("admin_token", "admin_token_file"),)


class _Source(NamedTuple):
    values: dict[str, Any]
    spelling: Callable[[str], str]  # how this source names a setting, for the INFO line
    verb: str


def load_settings(
    cli: dict[str, Any] | None = None,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build and validate the settings, or raise :class:`SettingsError`.

    ``env`` replaces ``os.environ`` when given (a test seam). What :data:`ONE_OF`
    set aside is in the result's :attr:`Settings.set_aside`, for the caller to log.
    """
    sources = [
        _Source(
            {k: v for k, v in (cli or {}).items() if v is not None},
            lambda name: "--" + name.replace("_", "-"),
            "is given",
        ),
        _Source(
            _variables(os.environ if env is None else env),
            lambda name: f"VIPMON_{name.upper()}",
            "is set",
        ),
        _Source(
            read_config_file(config_file) if config_file is not None else {},
            lambda name: f"{name} in {config_file}",
            "is set",
        ),
    ]
    set_aside = [line for pair in ONE_OF for line in _settle(pair, sources)]

    class _Sourced(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return tuple(InitSettingsSource(settings_cls, init_kwargs=s.values) for s in sources)

    try:
        built = _Sourced()
    except ValidationError as exc:
        raise _first_error(exc) from None
    settings = Settings.model_construct(**dict(built))
    settings._set_aside = tuple(set_aside)
    return settings


def _variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings among ``VIPMON_*`` variables, in any case as pydantic-settings reads them."""
    values = {}
    for variable, value in environ.items():
        name = variable[len("VIPMON_") :].lower()
        if variable.upper().startswith("VIPMON_") and name in Settings.model_fields:
            values[name] = value
    return values


def _settle(pair: tuple[str, ...], sources: list[_Source]) -> list[str]:
    """Drop from weaker sources the setting of ``pair`` the strongest one did not give."""
    winner, given, lines = "", set[str](), []
    for source in sources:
        if not winner:
            given = {name for name in pair if name in source.values}
            if given:
                first = next(name for name in pair if name in given)
                winner = f"{source.spelling(first)} {source.verb}"
            continue
        for name in (n for n in pair if n not in given):
            if name in source.values:
                del source.values[name]
                lines.append(
                    f"{source.spelling(name)} is ignored: {winner} "
                    "(flags beat the environment, which beats the config file)"
                )
    return lines


def _first_error(exc: ValidationError) -> SettingsError:
    error = exc.errors()[0]
    loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if loc:
        field = loc[0]
    else:
        field, _, message = message.partition(": ")
    if error.get("type") == "extra_forbidden":
        message = "unknown setting"
    return SettingsError(field, message)
