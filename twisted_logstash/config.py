"""Check the Logstash-named settings before anything binds or connects.

Each rule mirrors a configuration error that Logstash's own ``logstash`` input and output
raise (logstash-integration-logstash, logstash-input-http), worded once for both sides as a
``Message`` (``errors.py``) naming its settings as ``{placeholders}``: the programs show them as
the flags the user typed (``--ssl-key``), a pipeline and the library as settings (``ssl_key``).
Rules Logstash does not have (bad values, unreadable files, empty passwords) are worded the same
way, naming the setting and the cause.

``settings`` is a dict keyed by Logstash names; a missing key or None means "not given".
``explicit`` is the set of names the user typed, because one rule is about what was *given*:
any ``ssl_*`` setting while ``ssl_enabled`` is false.

The TLS rules (``check_input_tls``, ``check_output_tls``) are run by the TLS settings objects
(``security/settings.py``), on values whose defaults are already applied there, so that no rule
re-applies a default. ``check_input`` and ``check_output`` check a whole settings dict: the
basic-auth credentials, then TLS.

The checks return warnings (strings) for settings that work but are unsafe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Set

from twisted_logstash.errors import ConfigurationError, Message, named

#: Logstash's default for ``ssl_enabled`` (the framed wire's programs default it to false)
SSL_ENABLED = True
CLIENT_AUTHENTICATION = ("none", "optional", "required")
VERIFICATION_MODES = ("full", "none")

#: settings holding a path to a file the program must read
INPUT_FILES = ("ssl_certificate", "ssl_key", "ssl_keystore_path")
OUTPUT_FILES = ("ssl_certificate", "ssl_key", "ssl_keystore_path", "ssl_truststore_path")

#: basic-auth credentials without TLS: one sentence for the input and the output
WARN_CREDENTIALS = Message(
    "{username} and {password} travel in clear text: TLS is off ({ssl_enabled} is false)"
)
WARN_INPUT_CREDENTIALS = WARN_CREDENTIALS
WARN_OUTPUT_CREDENTIALS = WARN_CREDENTIALS
WARN_VERIFICATION_NONE = Message(
    "{ssl_verification_mode:none}: the receiver's certificate is not verified, anyone on the way "
    "can pose as it; {ssl_verification_mode:full} (the default) verifies it"
)
WARN_PASSWORD_FLAG = Message(
    "{password} is visible to other users in the process list; "
    "use {password_file} or LOGSTASH_PASSWORD"
)
#: how to go on when an input has TLS on (the native wire's default) and no identity
HINT_IDENTITY = (
    "give {ssl_certificate} and {ssl_key} (or {ssl_keystore_path} and {ssl_keystore_password}), "
    "or turn TLS off with {ssl_enabled:false}; `make certs` creates test certificates in certs/out"
)


def check_input(settings: Mapping, explicit: Set[str]) -> list[str]:
    """Raise ConfigurationError for the first broken rule; return the warnings."""
    from twisted_logstash.security.settings import ServerTLSSettings

    warnings = check_credentials(settings, WARN_INPUT_CREDENTIALS)
    return warnings + list(ServerTLSSettings.from_settings(settings, explicit).warnings)


def check_output(settings: Mapping, explicit: Set[str]) -> list[str]:
    """Raise ConfigurationError for the first broken rule; return the warnings."""
    from twisted_logstash.security.settings import ClientTLSSettings

    warnings = check_credentials(settings, WARN_OUTPUT_CREDENTIALS)
    return warnings + list(ClientTLSSettings.from_settings(settings, explicit).warnings)


def check_input_tls(values: Mapping, explicit: Set[str]) -> list[str]:
    """The input's TLS rules, on values with every default applied."""
    if not _ssl_enabled(values, explicit):
        return []
    _check_input_identity(values)
    _check_input_trust(values)
    _check_tuning(values)
    _check_files(values, INPUT_FILES)
    return []


def check_output_tls(values: Mapping, explicit: Set[str]) -> list[str]:
    """The output's TLS rules, on values with every default applied."""
    if not _ssl_enabled(values, explicit):
        return []
    _check_output_identity(values)
    _check_output_trust(values)
    _check_tuning(values)
    _check_files(values, OUTPUT_FILES)
    if values["ssl_verification_mode"] == "none":
        return [WARN_VERIFICATION_NONE]
    return []


def read_password(
    password: str | None, password_file: str | None, environ: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """The basic-auth password from one source, and warnings about how it was given.

    ``--password`` and ``--password-file`` exclude each other (an error: which one was meant
    cannot be guessed). Either one overrides ``LOGSTASH_PASSWORD``, which is read only when
    neither flag is given, like any environment default.
    """
    if password is not None and password_file is not None:
        raise ConfigurationError.about("give only one of {password} and {password_file}")
    if password is not None:
        return password, [WARN_PASSWORD_FLAG]
    if password_file is not None:
        return _first_line(password_file), []
    return environ.get("LOGSTASH_PASSWORD") or None, []


def _first_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as stream:
            line = stream.readline()
    except OSError as error:
        raise ConfigurationError.about(
            "{password_file} {path}: cannot be read ({why})", path=path, why=why(error)
        )
    except UnicodeDecodeError:
        raise ConfigurationError.about("{password_file} {path}: is not UTF-8 text", path=path)
    line = line.rstrip("\r\n")
    if not line:
        raise ConfigurationError.about("{password_file} {path}: the first line is empty", path=path)
    return line


def is_given(settings: Mapping, name: str) -> bool:
    """A setting counts as given when it holds something (an empty list is nothing)."""
    value = settings.get(name)
    return value is not None and value != [] and value != ()


def ssl_on(settings: Mapping, default: bool = SSL_ENABLED) -> bool:
    """``ssl_enabled`` as a bool: absent or None is ``default``; text is off only when it says
    false."""
    enabled = settings.get("ssl_enabled")
    if enabled is None:
        return default
    if isinstance(enabled, str):
        return enabled.strip().lower() != "false"
    return bool(enabled)


def _ssl_enabled(settings: Mapping, explicit: Set[str]) -> bool:
    enabled = ssl_on(settings)
    if not enabled:
        rejected = sorted(name for name in explicit if name.startswith("ssl_"))
        rejected = [name for name in rejected if name != "ssl_enabled"]
        if rejected:
            listed = ", ".join(named(name) for name in rejected)
            them = "it" if len(rejected) == 1 else "them"
            raise ConfigurationError.about(
                f"TLS is off ({{ssl_enabled}} is false): {listed} cannot be used; "
                f"give {{ssl_enabled:true}} or leave {them} out"
            )
    return enabled


def check_credentials(settings: Mapping, warning: str) -> list[str]:
    """The basic-auth rules; ``warning`` (the input's or the output's words) when credentials
    would travel without TLS."""
    if is_given(settings, "username"):
        if not is_given(settings, "password"):
            raise ConfigurationError.about("{password} is required when {username} is given")
        _check_not_empty(settings, ("password",))  # `--password ''`, `password=""`
        if not ssl_on(settings):
            return [warning]
    elif is_given(settings, "password"):
        raise ConfigurationError.about("{password} is not allowed without {username}")
    return []


def _check_input_identity(settings: Mapping) -> None:
    """The input's identity is mandatory; missing, the message says how to go on."""
    _check_identity(settings, required=True)


def _check_output_identity(settings: Mapping) -> None:
    """The output's identity is optional: it is only needed for mutual TLS."""
    _check_identity(settings, required=False)


def _check_identity(settings: Mapping, *, required: bool) -> None:
    """One wording per rule for both sides (the input and the output share these)."""
    has = lambda name: is_given(settings, name)  # noqa: E731
    if has("ssl_certificate") and has("ssl_keystore_path"):
        raise ConfigurationError.about(
            "the TLS identity is either {ssl_certificate} and {ssl_key} or "
            "{ssl_keystore_path}, not both"
        )
    if has("ssl_certificate"):
        if not has("ssl_key"):
            raise ConfigurationError.about("{ssl_key} is required when {ssl_certificate} is given")
    elif has("ssl_key"):
        raise ConfigurationError.about("{ssl_key} is not allowed without {ssl_certificate}")
    elif has("ssl_key_passphrase"):
        raise ConfigurationError.about("{ssl_key_passphrase} is not allowed without {ssl_key}")
    elif has("ssl_keystore_path"):
        if not has("ssl_keystore_password"):
            raise ConfigurationError.about(
                "{ssl_keystore_password} is required when {ssl_keystore_path} is given"
            )
    elif has("ssl_keystore_password"):
        raise ConfigurationError.about(
            "{ssl_keystore_password} is not allowed without {ssl_keystore_path}"
        )
    elif required:
        raise ConfigurationError.about("TLS is on but has no identity: " + HINT_IDENTITY)
    _check_not_empty(settings, ("ssl_key_passphrase", "ssl_keystore_password"))


def _check_input_trust(settings: Mapping) -> None:
    mode = settings["ssl_client_authentication"]
    if mode not in CLIENT_AUTHENTICATION:
        raise ConfigurationError.about(
            "{ssl_client_authentication} takes none, optional or required, not {mode!r}",
            mode=mode,
        )
    cas = is_given(settings, "ssl_certificate_authorities")
    if cas and mode == "none":
        raise ConfigurationError.about(
            "{ssl_certificate_authorities} is not used with {ssl_client_authentication:none}: "
            "give {ssl_client_authentication:optional} or required to verify client certificates"
        )
    if not cas and mode != "none":
        raise ConfigurationError.about(
            f"{{ssl_client_authentication:{mode}}} needs {{ssl_certificate_authorities}}: "
            "the CAs that client certificates are verified against"
        )
    _check_files(settings, (), ca_lists=("ssl_certificate_authorities",))


def _check_output_trust(settings: Mapping) -> None:
    mode = settings["ssl_verification_mode"]
    if mode not in VERIFICATION_MODES:
        raise ConfigurationError.about(
            "{ssl_verification_mode} takes full or none, not {mode!r}", mode=mode
        )
    has = lambda name: is_given(settings, name)  # noqa: E731
    if has("ssl_certificate_authorities") and has("ssl_truststore_path"):
        raise ConfigurationError.about(
            "trust is either {ssl_certificate_authorities} or {ssl_truststore_path}, not both"
        )
    if has("ssl_certificate_authorities"):
        if mode == "none":
            raise ConfigurationError.about(
                "{ssl_certificate_authorities} is not used with {ssl_verification_mode:none} "
                "(nothing is verified)"
            )
    elif has("ssl_truststore_path"):
        if mode == "none":
            raise ConfigurationError.about(
                "{ssl_truststore_path} is not used with {ssl_verification_mode:none} "
                "(nothing is verified)"
            )
        if not has("ssl_truststore_password"):
            raise ConfigurationError.about(
                "{ssl_truststore_password} is required when {ssl_truststore_path} is given"
            )
    elif has("ssl_truststore_password"):
        raise ConfigurationError.about(
            "{ssl_truststore_password} is not allowed without {ssl_truststore_path}"
        )
    _check_not_empty(settings, ("ssl_truststore_password",))
    _check_files(settings, (), ca_lists=("ssl_certificate_authorities",))


def _check_tuning(settings: Mapping) -> None:
    # imported here: pyOpenSSL is not needed to read these rules (plugin scanning stays cheap)
    from twisted_logstash.security.contexts import PROTOCOLS, translate_cipher_suites

    protocols = settings["ssl_supported_protocols"]
    unknown = [name for name in protocols if name not in PROTOCOLS]
    if unknown:
        raise ConfigurationError.about(
            "{ssl_supported_protocols}: {unknown} not supported; use {known}",
            unknown=", ".join(unknown),
            known=", ".join(PROTOCOLS),
        )
    # the TLS module owns the cipher table; it raises ConfigurationError naming unknown suites
    translate_cipher_suites(settings["ssl_cipher_suites"])
    timeout = settings.get("ssl_handshake_timeout")  # the input's alone
    if timeout is not None:
        try:
            number = int(timeout)
        except (TypeError, ValueError):
            number = 0
        if number <= 0 or str(timeout).strip() != str(number):
            raise ConfigurationError.about(
                "{ssl_handshake_timeout} must be a positive number of milliseconds, "
                "not {timeout!r}",
                timeout=timeout,
            )


def _check_not_empty(settings: Mapping, names: tuple[str, ...]) -> None:
    for name in names:
        if settings.get(name) == "":
            raise ConfigurationError.about(named(name) + " cannot be empty")


def _check_files(settings: Mapping, names: tuple[str, ...], ca_lists: tuple[str, ...] = ()):
    for name in names:
        if is_given(settings, name):
            _check_readable(name, settings[name])
    for name in ca_lists:
        for path in settings.get(name) or []:
            _check_readable(name, path)


def _check_readable(name: str, path: str) -> None:
    """The setting, its path and why it cannot be read."""
    try:
        with open(path, "rb") as stream:
            stream.read(1)
    except OSError as error:
        raise ConfigurationError.about(
            named(name) + " {path}: cannot be read ({why})", path=path, why=why(error)
        )


def why(error: OSError) -> str:
    """Why a file could not be used, in a few words."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "it is a directory"
    return os.strerror(error.errno) if error.errno else str(error)
