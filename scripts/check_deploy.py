#!/usr/bin/env python3
"""Structural checks of the deployment files in deploy/, and of their agreement with each
other and with deploy/revbloom.json: the things a container runtime or systemd would only
reveal at run time (a healthcheck on the wrong path, a stop timeout shorter than the
publisher's shutdown grace, a descriptor limit below the connection cap, a gateway binary the
image does not ship, a secret in the environment).

    python3 scripts/check_deploy.py            # check deploy/
    python3 scripts/check_deploy.py --selftest # also show that broken copies are caught

Needs PyYAML. Exit status 0 when every check holds, 1 otherwise (each failure on its own line).
"""

import json
import re
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DATA = "/var/lib/revbloom"


def seconds(text):
    """A systemd or compose span (`30s`, `1m30s`, `20`) in seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    total = 0
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    pos = 0
    for m in re.finditer(r"(\d+)\s*(ms|sec|min|s|m|h)", text):
        if m.start() != pos:
            raise ValueError(f"not a time span: {text!r}")
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"not a time span: {text!r}")
    return total


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def unit_settings(text):
    """{section: [(key, value), ...]} of a systemd unit (repeated keys kept in order)."""
    sections, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        sections.setdefault(section, []).append((key.strip(), value.strip()))
    return sections


def check(files):
    """Every problem found in `files` (name -> text), as lines; empty when all hold."""
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)

    config = json.loads(files["revbloom.json"])
    grace_s = config["connections"]["shutdown_grace_ms"] / 1000
    max_conns = config["connections"]["max_connections"]
    port = config["listen"].rsplit(":", 1)[1]

    # --- Dockerfile
    ins = dockerfile_instructions(files["Dockerfile"])
    froms = [a for i, a in ins if i == "FROM"]
    need(len(froms) >= 2, "Dockerfile: not multi-stage (one FROM)")
    need(froms and froms[0].startswith("rust:"), "Dockerfile: the build stage is not the official rust image")
    need(froms and re.match(r"debian:\S*-slim\b", froms[-1]), "Dockerfile: the runtime stage is not a slim Debian image")
    users = [a for i, a in ins if i == "USER"]
    need(users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]),
         "Dockerfile: the last USER is not a fixed non-root numeric uid")
    uid = users[-1].split(":")[0] if users else None
    runs = " ".join(a for i, a in ins if i == "RUN")
    need(uid and re.search(rf"useradd\b[^&]*--uid {uid}\b", runs), f"Dockerfile: no user is created with uid {uid}")
    need(uid and re.search(rf"chown {uid}:\d+ {DATA}\b", runs), f"Dockerfile: {DATA} is not chowned to uid {uid}")
    volumes = " ".join(a for i, a in ins if i == "VOLUME")
    need(DATA in volumes, f"Dockerfile: {DATA} is not a VOLUME")
    envs = " ".join(a for i, a in ins if i == "ENV")
    need(f"REVBLOOM_DATA={DATA}" in envs, f"Dockerfile: REVBLOOM_DATA is not {DATA}")
    need("ADMIN_TOKEN" not in envs, "Dockerfile: an admin token in ENV ends up in the image")
    health = [a for i, a in ins if i == "HEALTHCHECK"]
    need(health and "/readyz" in health[-1], "Dockerfile: no HEALTHCHECK on /readyz")
    if health and "curl" in health[-1]:
        need(re.search(r"apt-get install[^&]*\bcurl\b", runs), "Dockerfile: HEALTHCHECK uses curl, which the runtime stage does not install")
    need(health and f":{port}/" in health[-1], f"Dockerfile: HEALTHCHECK is not on the listen port {port}")
    copies = " ".join(a for i, a in ins if i == "COPY" and "--from=" in a)
    shipped = set(re.findall(r"/out/(\S+)", copies))
    need("revbloom" in shipped, "Dockerfile: the runtime stage lacks the revbloom binary")
    entry = [a for i, a in ins if i == "ENTRYPOINT"]
    need(entry and json.loads(entry[-1])[0] == "revbloom", "Dockerfile: ENTRYPOINT is not revbloom")

    # --- compose.yaml
    compose = yaml.safe_load(files["compose.yaml"])
    services = compose.get("services") or {}
    need(set(services) >= {"publisher", "gateway"}, f"compose: services are {sorted(services)}, want publisher and gateway")
    pub = services.get("publisher") or {}
    gw = services.get("gateway") or {}
    build = pub.get("build") or {}
    need((DEPLOY / build.get("context", ".") / build.get("dockerfile", "")).resolve() == (DEPLOY / "Dockerfile").resolve(),
         "compose: the publisher is not built from deploy/Dockerfile with the repository as context")
    command = pub.get("command") or []
    need(command[:1] == ["serve"], "compose: the publisher does not run `revbloom serve`")
    if "--config" in command:
        cfg = command[command.index("--config") + 1]
        need(any(str(v).endswith(f":{cfg}:ro") and str(v).startswith("./revbloom.json") for v in pub.get("volumes", [])),
             f"compose: {cfg} is not deploy/revbloom.json mounted read-only")
    need(any(str(v).endswith(f":{DATA}") for v in pub.get("volumes", [])), f"compose: no volume on the publisher's {DATA}")
    need(seconds(pub.get("stop_grace_period", "10s")) > grace_s,
         f"compose: publisher stop_grace_period must exceed the {grace_s:g} s shutdown grace")
    nofile = ((pub.get("ulimits") or {}).get("nofile") or {})
    need(isinstance(nofile, dict) and min(nofile.get("soft", 0), nofile.get("hard", 0)) > max_conns,
         f"compose: publisher nofile ulimit must exceed max_connections ({max_conns})")
    depends = gw.get("depends_on") or {}
    need(isinstance(depends, dict) and (depends.get("publisher") or {}).get("condition") == "service_healthy",
         "compose: the gateway does not wait for a healthy publisher")
    need(gw.get("image") == pub.get("image"), "compose: the gateway does not use the publisher's image")
    gw_entry = gw.get("entrypoint") or []
    need(gw_entry[:1] and gw_entry[0] in shipped, f"compose: gateway entrypoint {gw_entry} is not a binary the image ships ({sorted(shipped)})")
    gw_cmd = gw.get("command") or []
    need("--publisher" in gw_cmd and gw_cmd[gw_cmd.index("--publisher") + 1] == f"http://publisher:{port}",
         "compose: the gateway does not follow the publisher service")
    gw_health = " ".join(str(x) for x in ((gw.get("healthcheck") or {}).get("test") or []))
    need("/readyz" in gw_health, "compose: the gateway's healthcheck does not probe its /readyz (a snapshot loaded and fresh)")
    for name, svc in services.items():
        env = svc.get("environment") or {}
        keys = env.keys() if isinstance(env, dict) else [str(e).split("=")[0] for e in env]
        need(not any("TOKEN" in k or "SECRET" in k for k in keys), f"compose: {name} takes a secret from the environment")
        need(not any("--hs256-secret" == str(a) for a in (svc.get("command") or [])), f"compose: {name} has a secret on argv")

    # --- revbloom.service
    unit = unit_settings(files["revbloom.service"])
    svc = dict(unit.get("Service", []))
    all_svc = unit.get("Service", [])
    required = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
        "MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "", "Restart": "on-failure",
        "StateDirectory": "revbloom",
    }
    for key, value in required.items():
        need(svc.get(key) == value, f"revbloom.service: want {key}={value}, have {svc.get(key)!r}")
    need(svc.get("DynamicUser") == "yes" or svc.get("User"), "revbloom.service: no DynamicUser= or User=")
    need(set(svc.get("RestrictAddressFamilies", "").split()) <= {"AF_INET", "AF_INET6", "AF_UNIX"}
         and svc.get("RestrictAddressFamilies"), "revbloom.service: RestrictAddressFamilies missing or too wide")
    need(("SystemCallFilter", "@system-service") in all_svc, "revbloom.service: no SystemCallFilter=@system-service")
    need(seconds(svc.get("TimeoutStopSec", "0")) > grace_s,
         f"revbloom.service: TimeoutStopSec must exceed the {grace_s:g} s shutdown grace")
    need(int(svc.get("LimitNOFILE", "0")) > max_conns, f"revbloom.service: LimitNOFILE must exceed max_connections ({max_conns})")
    exec_start = shlex.split(svc.get("ExecStart", ""))
    need(exec_start[1:2] == ["serve"], "revbloom.service: ExecStart is not `revbloom serve`")
    need(not any("token" in a.lower() for a in exec_start), "revbloom.service: a token on the command line")
    need(not any("ADMIN_TOKEN" in v for k, v in all_svc if k == "Environment"),
         "revbloom.service: the admin token belongs in EnvironmentFile= or a credential, not Environment=")
    need("REVBLOOM_DATA=%S/revbloom" in [v for k, v in all_svc if k == "Environment"],
         "revbloom.service: the data folder is not pinned to the StateDirectory")
    return problems


def load():
    names = ["Dockerfile", "compose.yaml", "revbloom.service", "revbloom.json"]
    return {n: (DEPLOY / n).read_text() for n in names}


def selftest(files):
    """Broken copies of the files are caught: each mutation must raise the named problem."""
    mutations = [
        ("Dockerfile", "HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK on /readyz"),
        ("Dockerfile", "USER 10001:10001", "USER root", "non-root numeric uid"),
        ("Dockerfile", "ca-certificates curl", "ca-certificates", "does not install"),
        ("compose.yaml", "stop_grace_period: 20s", "stop_grace_period: 5s", "stop_grace_period must exceed"),
        ("compose.yaml", "entrypoint: [\"revbloom-gateway\"]", "entrypoint: [\"gateway\"]", "not a binary the image ships"),
        ("compose.yaml", "condition: service_healthy", "condition: service_started", "wait for a healthy publisher"),
        ("revbloom.service", "TimeoutStopSec=30s", "TimeoutStopSec=5s", "TimeoutStopSec must exceed"),
        ("revbloom.service", "LimitNOFILE=8192", "LimitNOFILE=1024", "LimitNOFILE must exceed"),
        ("revbloom.service", "EnvironmentFile=-/etc/revbloom/revbloom.env", "Environment=REVBLOOM_ADMIN_TOKEN=x", "not Environment="),
        ("revbloom.json", '"shutdown_grace_ms": 10000', '"shutdown_grace_ms": 40000', "TimeoutStopSec must exceed"),
    ]
    failed = 0
    for name, old, new, expect in mutations:
        if old not in files[name]:
            print(f"selftest: {name} no longer contains {old!r}; update the mutation")
            failed += 1
            continue
        broken = dict(files, **{name: files[name].replace(old, new, 1)})
        found = check(broken)
        if not any(expect in p for p in found):
            print(f"selftest: {name} with {new!r} was not caught (want {expect!r}; got {found})")
            failed += 1
    print(f"selftest: {len(mutations) - failed} passed, {failed} failed")
    return failed == 0


def main():
    files = load()
    problems = check(files)
    for p in problems:
        print(f"FAIL {p}")
    ok = not problems
    if ok:
        print("ok   deploy/: Dockerfile, compose.yaml, revbloom.service agree with revbloom.json")
    if "--selftest" in sys.argv[1:]:
        ok = selftest(files) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
