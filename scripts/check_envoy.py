#!/usr/bin/env python3
"""Lint deploy/envoy/envoy.yaml without Envoy (not a Debian package): the file parses as YAML,
and so does its trusted-metadata variant (the commented-out `jwt_authn` filter, `idp` cluster
and `metadata_context_namespaces` uncommented); in both, ext_authz speaks gRPC v3 to an HTTP/2
cluster, fails closed and sends no body, and the variant's `payload_in_metadata` reaches the
ext_authz filter.

    python3 scripts/check_envoy.py              # needs PyYAML
    python3 scripts/check_envoy.py --selftest   # also show that broken copies are caught
"""
import pathlib
import re
import sys

import yaml

FILE = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "envoy" / "envoy.yaml"
JWT_AUTHN = "envoy.filters.http.jwt_authn"
EXT_AUTHZ = "envoy.filters.http.ext_authz"


def uncomment(text):
    """The trusted-metadata variant: indented `# key: ...` / `# - ...` lines uncommented
    (prose comments start with a capital letter or hold backticks and stay comments)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\s+)# (.*)$", line)
        if m and re.match(r'^[\s-]*"?[@a-z_]+"?:', m.group(2)) and "`" not in m.group(2):
            out.append(m.group(1) + m.group(2))
        else:
            out.append(line)
    return "\n".join(out)


def check_one(doc, label, trusted):
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(f"{label}: {what}")

    try:
        res = doc["static_resources"]
        hcm = res["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        filters = hcm["http_filters"]
        clusters = {c["name"]: c for c in res["clusters"]}
    except (KeyError, IndexError, TypeError) as e:
        return [f"{label}: not the expected Envoy layout ({e!r})"]
    names = [f.get("name") for f in filters]
    need(EXT_AUTHZ in names, "no ext_authz filter")
    need(names[-1:] == ["envoy.filters.http.router"], "the router is not the last HTTP filter")
    if EXT_AUTHZ not in names:
        return problems
    authz = filters[names.index(EXT_AUTHZ)].get("typed_config") or {}
    need(authz.get("transport_api_version") == "V3", "ext_authz transport_api_version is not V3")
    need(authz.get("failure_mode_allow") is False, "ext_authz failure_mode_allow is not false")
    need("with_request_body" not in authz, "ext_authz sends the request body")
    cluster = ((authz.get("grpc_service") or {}).get("envoy_grpc") or {}).get("cluster_name")
    need(cluster in clusters, f"ext_authz gRPC cluster {cluster!r} is not defined")
    opts = (clusters.get(cluster) or {}).get("typed_extension_protocol_options") or {}
    http = opts.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions") or {}
    need("http2_protocol_options" in (http.get("explicit_http_config") or {}),
         f"cluster {cluster!r} does not speak HTTP/2 (gRPC needs it)")
    if trusted:
        need(JWT_AUTHN in names and names.index(JWT_AUTHN) < names.index(EXT_AUTHZ),
             "jwt_authn does not run before ext_authz")
        need(JWT_AUTHN in (authz.get("metadata_context_namespaces") or []),
             "ext_authz does not receive the jwt_authn metadata namespace")
        if JWT_AUTHN in names:
            providers = (filters[names.index(JWT_AUTHN)].get("typed_config") or {}).get("providers") or {}
            need(providers and all(p.get("payload_in_metadata") for p in providers.values()),
                 "a jwt_authn provider has no payload_in_metadata")
            for p in providers.values():
                jwks_cluster = ((p.get("remote_jwks") or {}).get("http_uri") or {}).get("cluster")
                need(jwks_cluster in clusters, f"JWKS cluster {jwks_cluster!r} is not defined")
    else:
        need(JWT_AUTHN not in names, "jwt_authn is active in the plain configuration")
    return problems


def check(text):
    try:
        plain = yaml.safe_load(text)
        trusted = yaml.safe_load(uncomment(text))
    except yaml.YAMLError as e:
        return [f"not YAML: {e}"]
    return check_one(plain, "envoy.yaml", False) + check_one(trusted, "envoy.yaml (trusted variant)", True)


def selftest(text):
    mutations = [
        ("  failure_mode_allow: false", "  failure_mode_allow: true", "failure_mode_allow is not false"),
        ("transport_api_version: V3", "transport_api_version: V2", "not V3"),
        ("http2_protocol_options: {}", "http_protocol_options: {}", "HTTP/2"),
        ("# metadata_context_namespaces: [envoy.filters.http.jwt_authn]", "# nothing", "metadata namespace"),
        ("#         payload_in_metadata: jwt_payload", "#         forward_payload_header: x-jwt", "payload_in_metadata"),
        ("cluster_name: revbloom_authz }", "cluster_name: elsewhere }", "is not defined"),
    ]
    failed = 0
    for old, new, expect in mutations:
        if old not in text:
            print(f"selftest: envoy.yaml no longer contains {old!r}; update the mutation")
            failed += 1
            continue
        found = check(text.replace(old, new, 1))
        if not any(expect in p for p in found):
            print(f"selftest: {new!r} was not caught (want {expect!r}; got {found})")
            failed += 1
    print(f"selftest: {len(mutations) - failed} passed, {failed} failed")
    return failed == 0


def main():
    text = FILE.read_text()
    problems = check(text)
    for p in problems:
        print(f"FAIL {p}")
    ok = not problems
    if ok:
        print("ok   deploy/envoy/envoy.yaml: ext_authz over gRPC v3, fail closed; trusted variant parses")
    if "--selftest" in sys.argv[1:]:
        ok = selftest(text) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
