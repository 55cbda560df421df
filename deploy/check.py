#!/usr/bin/env python3
"""Checks the deploy files of orders-api before anyone applies them.

    python3 deploy/check.py               # every check below; exit 1 on any failure
    python3 deploy/check.py --self-test   # proves the checks refuse known-bad input
    python3 deploy/check.py --crd PATH    # the SpinApp CRD to validate against
    python3 deploy/check.py --require-crd # fail, rather than skip, without the CRD

1. yamllint (deploy/.yamllint, --strict) on every YAML file under deploy/.
2. Each SpinApp against the SpinApp CRD's openAPIV3Schema, unknown fields
   refused (as `kubectl apply` does by default), plus the replica rules of the
   spin-operator's admission webhook (internal/webhook/spinapp_validating.go).
3. Scale-out only with shared storage: a SpinApp with more than one replica,
   or with autoscaling, must take database_url from a Secret or map the
   `default` SQLite database to libSQL; otherwise each pod keeps its own
   orders in its own SQLite file and an order created on one is 404 on another.
4. SpinApp variables against spin.toml [variables]: declared, every
   `required = true` one set, `secret = true` ones only from a Secret, plain
   values valid for schemas/config.json; HPAs aim at an autoscaled SpinApp.
5. Runtime config files parse as TOML and use only keys Spin reads.
6. Markdown: `spin` commands in fenced code blocks are allow-listed
   subcommands with known flags; relative links resolve.

Needs Python 3.11+, PyYAML, jsonschema and yamllint (deploy/requirements.txt).
"""
import argparse
import copy
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
SPIN_TOML = ROOT / "spin.toml"
CONFIG_SCHEMA = ROOT / "schemas" / "config.json"

# The CRD is third-party content fetched from GitHub, so it is kept out of
# this repository: CI reads it from the shared/ folder laid beside the clone.
CRD_FILE = "core.spinkube.dev_spinapps.yaml"
CRD_DEFAULT = ROOT.parent / "shared" / "spinkube" / CRD_FILE
CRD_SOURCE = ("spinkube/spin-operator@90d14cc7b112231e61f35bfd9abbf469acf8df68 "
              "config/crd/bases/core.spinkube.dev_spinapps.yaml (Apache-2.0)")
CRD_SHA256 = "2116e4006de1e979c586632afbe097966ee54ffa03618c5e92e82f9dda594199"

# Top-level keys Spin 4 reads from a runtime config file
# (spinframework/spin crates/runtime-config/src/lib.rs and the factors it
# calls); Spin itself fails on any other ("unused runtime config key(s)").
RUNTIME_CONFIG_KEYS = {
    "state_dir", "log_dir", "max_instance_memory", "key_value_store",
    "sqlite_database", "llm_compute", "variables_provider", "config_provider",
    "outbound_networking", "client_tls", "outbound_http", "outbound_pg",
    "outbound_mysql", "outbound_redis", "outbound_mqtt",
}
# crates/sqlite/src/lib.rs: the two database types and their exact keys.
SQLITE_KEYS = {"libsql": ({"type", "url", "token"}, {"type", "url", "token"}),
               "spin": ({"type"}, {"type", "path", "allow_attach_file"})}

# `spin` commands the docs may show, with the flags each takes, from the
# platforms' command references (links in deploy/fermyon-cloud.md) and
# `spin <cmd> --help` of Spin 4.1. `spin registry login -p` is left out on
# purpose: a password on the command line ends up in shell history.
HELP = {"--help", "-h"}
SPIN_COMMANDS = {
    ("build",): set(),
    ("up",): {"--from", "-f", "--listen", "--runtime-config-file", "--variable",
              "--sqlite", "--state-dir", "--max-instance-concurrent-reuse-count",
              "--max-instance-reuse-count", "--idle-instance-timeout"},
    ("plugins", "update"): set(),
    ("plugins", "install"): {"--yes", "-y"},
    ("plugins", "upgrade"): set(),
    ("registry", "login"): {"--username", "-u", "--password-stdin"},
    ("registry", "push"): {"--from", "-f", "--build", "--profile", "--annotation",
                           "--cache-dir", "--insecure", "-k"},
    ("cloud", "login"): set(),
    ("cloud", "deploy"): {"--variable", "--link", "--from", "-f", "--build",
                          "--readiness-timeout", "--key-value"},
    ("cloud", "variables", "set"): {"--app"},
    ("cloud", "variables", "list"): {"--app"},
    ("cloud", "variables", "delete"): {"--app"},
    ("cloud", "sqlite", "list"): set(),
    ("cloud", "sqlite", "create"): set(),
    ("cloud", "sqlite", "execute"): {"--database", "-d", "--label", "-l", "--app", "-a"},
    ("cloud", "apps", "list"): set(),
    ("aka", "login"): set(),
    ("aka", "deploy"): {"--variable", "--from", "-f", "--build", "--no-confirm",
                        "--create-name", "--app-id", "--account-id", "--cache-dir"},
    ("aka", "logs"): set(),
    ("aka", "info"): set(),
}
PLACEHOLDER = "REPLACE_ME"
VAR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def load_spin_variables():
    """spin.toml [variables]: name -> {"required": bool, "secret": bool}."""
    with open(SPIN_TOML, "rb") as f:
        table = tomllib.load(f).get("variables", {})
    return {name: {"required": bool(v.get("required")), "secret": bool(v.get("secret"))}
            for name, v in table.items()}


def load_config_schema():
    if not CONFIG_SCHEMA.exists():
        return None
    return json.loads(CONFIG_SCHEMA.read_text())


def strict(schema):
    """Refuse unknown fields where the CRD lists the fields of an object."""
    if isinstance(schema, dict):
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def load_crd_validator(path):
    """(validator, note); validator is None when the CRD cannot be used."""
    if path is None or not path.exists():
        return None, (f"no SpinApp CRD at {path} (the operator's file is not copied here; "
                      "deploy/README.md, 'The checks', says where to get it)")
    data = path.read_bytes()
    crd = yaml.safe_load(data)
    if crd.get("metadata", {}).get("name") != "spinapps.core.spinkube.dev":
        return None, f"{path} is not the SpinApp CRD (spinapps.core.spinkube.dev)"
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    if "v1alpha1" not in versions:
        return None, f"{path} has no v1alpha1 version"
    schema = strict(copy.deepcopy(versions["v1alpha1"]["schema"]["openAPIV3Schema"]))
    digest = hashlib.sha256(data).hexdigest()
    note = f"{path}, sha256 {digest[:12]}"
    if digest != CRD_SHA256:
        note += f", not the pinned {CRD_SHA256[:12]} of {CRD_SOURCE}"
    return jsonschema.Draft7Validator(schema), note


def where(error):
    return "/".join(str(p) for p in error.absolute_path) or "(document)"


def check_spinapp(app, ctx):
    """Errors of one SpinApp document: CRD, webhook, storage, variables."""
    errors = []
    name = app.get("metadata", {}).get("name", "?")
    tag = f"SpinApp {name}"
    if ctx["crd"] is not None:
        for e in sorted(ctx["crd"].iter_errors(app), key=lambda e: list(e.absolute_path)):
            errors.append(f"{tag}: CRD: {where(e)}: {e.message}")
    spec = app.get("spec") if isinstance(app.get("spec"), dict) else {}
    autoscale = spec.get("enableAutoscaling") is True
    replicas = spec.get("replicas", 0)
    replicas = replicas if isinstance(replicas, int) else 0
    # spin-operator's validating webhook (validateExecutor, validateReplicas).
    if not spec.get("executor"):
        errors.append(f"{tag}: spec.executor must be set")
    if autoscale and replicas != 0:
        errors.append(f"{tag}: spec.replicas cannot be set when enableAutoscaling is true")
    if not autoscale and replicas < 1:
        errors.append(f"{tag}: spec.replicas must be > 0 when enableAutoscaling is false")

    variables = {}
    for var in spec.get("variables") or []:
        if isinstance(var, dict) and isinstance(var.get("name"), str):
            if var["name"] in variables:
                errors.append(f"{tag}: variable {var['name']} is set twice")
            variables[var["name"]] = var

    def from_secret(var):
        ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
        return "value" not in var and bool(ref.get("name")) and bool(ref.get("key"))

    # Shared storage before scale-out (the point of this check).
    db_url = variables.get("database_url")
    libsql = any(isinstance(d, dict) and d.get("name") == "default" and d.get("type") == "libsql"
                 for d in (spec.get("runtimeConfig") or {}).get("sqliteDatabases") or [])
    if (autoscale or replicas > 1) and not ((db_url and from_secret(db_url)) or libsql):
        scale = "enableAutoscaling" if autoscale else f"replicas: {replicas}"
        errors.append(
            f"{tag}: {scale} with the orders in per-replica SQLite: each pod would keep its "
            "own orders (created on one pod, 404 on the others). Set database_url from a "
            "Secret (valueFrom.secretKeyRef) and db_host, or map the `default` database to "
            "libSQL in spec.runtimeConfig.sqliteDatabases")

    declared = ctx["variables"]
    for vname, var in variables.items():
        if not VAR_NAME.match(vname):
            errors.append(f"{tag}: variable {vname!r} is not a Spin variable name")
        if vname not in declared:
            errors.append(f"{tag}: variable {vname} is not declared in spin.toml [variables]")
            continue
        if declared[vname]["secret"] and not from_secret(var):
            errors.append(f"{tag}: variable {vname} is secret in spin.toml: take it from a "
                          "Secret (valueFrom.secretKeyRef), never a plain value")
        if "value" in var:
            errors += check_value(ctx, vname, var["value"], f"{tag}: variable {vname}")
        ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
        example = ctx["secrets"].get(ref.get("name"))
        if example is not None:
            if ref.get("key") not in example:
                errors.append(f"{tag}: variable {vname}: Secret {ref.get('name')} has no key "
                              f"{ref.get('key')!r} in its example")
            else:
                errors += check_value(ctx, vname, example[ref["key"]],
                                      f"Secret {ref['name']} key {ref['key']}")
    for vname, decl in declared.items():
        if decl["required"] and vname not in variables:
            errors.append(f"{tag}: variable {vname} is required in spin.toml but not set")
    if db_url and "db_host" not in variables:
        errors.append(f"{tag}: database_url is set but db_host is not: the components may "
                      "only reach db_host (allowed_outbound_hosts), localhost:5432 by default")
    return errors


def check_value(ctx, name, value, label):
    """A plain variable value against its schemas/config.json property."""
    schema = ctx["config_schema"]
    prop = (schema or {}).get("properties", {}).get(name)
    if prop is None:
        return []
    if not isinstance(value, str):
        return [f"{label}: must be a string (Spin variables are strings), got {value!r}"]
    validator = jsonschema.Draft202012Validator(prop)
    return [f"{label}: {e.message}" for e in validator.iter_errors(value)]


def check_secret_example(secret, label):
    """Example Secrets must not hold anything that could be real."""
    values = dict(secret.get("stringData") or {})
    if secret.get("data"):
        return [f"{label}: use stringData with {PLACEHOLDER} placeholders, not data"]
    return [f"{label}: key {k} does not look like a placeholder (no {PLACEHOLDER})"
            for k, v in values.items() if PLACEHOLDER not in str(v)]


def check_autoscalers(hpas, apps):
    errors = []
    autoscaled = {a["metadata"]["name"] for a in apps
                  if isinstance(a.get("spec"), dict) and a["spec"].get("enableAutoscaling") is True}
    targets = set()
    for hpa in hpas:
        label = f"HorizontalPodAutoscaler {hpa.get('metadata', {}).get('name', '?')}"
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        if hpa.get("apiVersion") != "autoscaling/v2":
            errors.append(f"{label}: apiVersion must be autoscaling/v2")
        if ref.get("apiVersion") != "apps/v1" or ref.get("kind") != "Deployment":
            errors.append(f"{label}: scaleTargetRef must be an apps/v1 Deployment "
                          "(the operator names it after the SpinApp)")
        if ref.get("name") not in autoscaled:
            errors.append(f"{label}: targets {ref.get('name')!r}, not a SpinApp with "
                          "enableAutoscaling: true (the operator would fight over replicas)")
        targets.add(ref.get("name"))
        low, high = spec.get("minReplicas", 1), spec.get("maxReplicas")
        if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
            errors.append(f"{label}: needs 1 <= minReplicas <= maxReplicas")
    for name in sorted(autoscaled - targets):
        errors.append(f"SpinApp {name}: enableAutoscaling but no HorizontalPodAutoscaler "
                      "targets it: its Deployment would stay at one replica")
    return errors


def check_runtime_config(data, label):
    errors = [f"{label}: unknown top-level key {k!r} (Spin refuses unused keys)"
              for k in sorted(set(data) - RUNTIME_CONFIG_KEYS)]
    for db, conf in (data.get("sqlite_database") or {}).items():
        dlabel = f"{label}: [sqlite_database.{db}]"
        kind = conf.get("type") if isinstance(conf, dict) else None
        if kind not in SQLITE_KEYS:
            errors.append(f"{dlabel}: type must be one of {sorted(SQLITE_KEYS)}")
            continue
        needed, allowed = SQLITE_KEYS[kind]
        if needed - set(conf):
            errors.append(f"{dlabel}: missing {sorted(needed - set(conf))}")
        if set(conf) - allowed:
            errors.append(f"{dlabel}: unknown keys {sorted(set(conf) - allowed)}")
        if kind == "libsql":
            if not re.match(r"^https?://", str(conf.get("url", ""))):
                errors.append(f"{dlabel}: url must start with https:// or http://")
            if PLACEHOLDER not in str(conf.get("token", PLACEHOLDER)):
                errors.append(f"{dlabel}: token is not a {PLACEHOLDER} placeholder; never "
                              "commit a real token")
    return errors


def shell_lines(block):
    """Logical lines of a shell block: continuations joined, prompts dropped."""
    joined = re.sub(r"\\\n", " ", block)
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if line:
            yield line


def check_spin_command(words, label):
    flags = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    positional = [w for w in words if not w.startswith("-")][:3]
    for n in range(len(positional), 0, -1):
        if tuple(positional[:n]) in SPIN_COMMANDS:
            command = tuple(positional[:n])
            break
    else:
        if flags and set(flags) <= HELP | {"--version", "-V"}:
            return []
        return [f"{label}: `spin {' '.join(positional)}` is not an allow-listed spin command"]
    bad = [f for f in flags if f not in SPIN_COMMANDS[command] | HELP]
    return [f"{label}: `spin {' '.join(command)}` does not take {', '.join(bad)}"] if bad else []


def check_markdown(text, label, base):
    errors = []
    for m in re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        lineno = text.count("\n", 0, m.start()) + 1
        for line in shell_lines(m.group(1)):
            try:
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                tokens = list(lexer)
            except ValueError as e:
                errors.append(f"{label}:{lineno}: cannot parse `{line}`: {e}")
                continue
            command_start = True
            for i, tok in enumerate(tokens):
                if tok and set(tok) <= set("|&;()"):
                    command_start = True
                elif command_start and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tok):
                    continue  # VAR=value before a command
                elif command_start and tok == "spin":
                    words = []
                    for t in tokens[i + 1:]:
                        if set(t) <= set("|&;()"):
                            break
                        words.append(t)
                    errors += check_spin_command(words, f"{label}:{lineno}")
                    command_start = False
                else:
                    command_start = False
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"^(https?:|mailto:|#)", link):
            if not (base / link.split("#")[0]).exists():
                errors.append(f"{label}: link {link} does not resolve")
    return errors


def yaml_files():
    for path in sorted(DEPLOY.rglob("*")):
        rel = path.relative_to(DEPLOY)
        if any(p.startswith(".") or p in ("__pycache__", "node_modules") for p in rel.parts[:-1]):
            continue
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            yield path


def run_checks(crd_path):
    """Every check over the real files: list of (name, errors)."""
    results = []
    files = list(yaml_files())
    lint = subprocess.run([sys.executable, "-m", "yamllint", "--strict", "-f", "parsable",
                           "-c", str(DEPLOY / ".yamllint"), str(DEPLOY / ".yamllint"),
                           *map(str, files)], capture_output=True, text=True)
    results.append(("yamllint", [l for l in (lint.stdout + lint.stderr).splitlines() if l]
                    or ([] if lint.returncode == 0 else [f"yamllint exited {lint.returncode}"])))

    docs, parse_errors = [], []
    for path in files:
        try:
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict):
                    docs.append((path.relative_to(DEPLOY), doc))
        except yaml.YAMLError as e:
            parse_errors.append(f"{path.relative_to(DEPLOY)}: {e}")
    results.append(("YAML parses", parse_errors))

    crd, crd_note = load_crd_validator(crd_path)
    if crd is None:
        results.append(("SKIP", [f"the SpinApp CRD validation of deploy/: {crd_note}"]))
    secrets = {d["metadata"]["name"]: dict(d.get("stringData") or {})
               for _, d in docs if d.get("kind") == "Secret"}
    ctx = {"crd": crd, "crd_note": crd_note, "variables": load_spin_variables(),
           "config_schema": load_config_schema(), "secrets": secrets}
    apps = [d for _, d in docs if d.get("kind") == "SpinApp"]
    app_errors = [] if apps else ["no SpinApp found under deploy/"]
    for app in apps:
        app_errors += check_spinapp(app, ctx)
    app_errors += check_autoscalers([d for _, d in docs
                                     if d.get("kind") == "HorizontalPodAutoscaler"], apps)
    app_errors += [e for p, d in docs if d.get("kind") == "Secret"
                   for e in check_secret_example(d, str(p))]
    name = "SpinApps, storage, variables" + (f" (against {crd_note})" if crd else "")
    results.append((name, app_errors))

    rc_errors = []
    for path in sorted(DEPLOY.rglob("runtime-config*.toml")):
        try:
            rc_errors += check_runtime_config(tomllib.loads(path.read_text()),
                                              str(path.relative_to(DEPLOY)))
        except tomllib.TOMLDecodeError as e:
            rc_errors.append(f"{path.relative_to(DEPLOY)}: not TOML: {e}")
    results.append(("runtime config", rc_errors))

    md_errors = []
    for path in sorted(DEPLOY.rglob("*.md")):
        md_errors += check_markdown(path.read_text(), str(path.relative_to(DEPLOY)), path.parent)
    results.append(("markdown commands and links", md_errors))
    return results


def self_test(crd_path):
    """Known-bad input must be refused, known-good accepted."""
    crd, crd_note = load_crd_validator(crd_path)
    good = yaml.safe_load((DEPLOY / "spinkube" / "spinapp.yaml").read_text())
    ctx = {"crd": crd, "crd_note": crd_note, "variables": load_spin_variables(),
           "config_schema": load_config_schema(), "secrets": {}}

    def app(**changes):
        doc = copy.deepcopy(good)
        spec = doc["spec"]
        for key, value in changes.items():
            if key == "drop_vars":
                spec["variables"] = [v for v in spec["variables"] if v["name"] not in value]
            elif value is None:
                spec.pop(key, None)
            else:
                spec[key] = value
        return doc

    def variable(name, **fields):
        others = [v for v in good["spec"]["variables"] if v["name"] != name]
        return others + [dict(name=name, **fields)]

    libsql = {"sqliteDatabases": [{"name": "default", "type": "libsql", "options": [
        {"name": "url", "value": "https://db.example.internal"},
        {"name": "token", "valueFrom": {"secretKeyRef": {"name": "t", "key": "token"}}}]}]}
    no_db = {"drop_vars": {"database_url", "db_host"}}
    cases = [  # (what, errors, substring that must appear; None: no errors at all)
        # The cases whose expectation names the CRD are dropped when it is absent.
        ("the real spinapp.yaml is accepted", check_spinapp(good, ctx), None),
        ("3 replicas, no database_url: refused",
         check_spinapp(app(replicas=3, enableAutoscaling=None, **no_db), ctx),
         "per-replica SQLite"),
        ("autoscaling, no database_url: refused",
         check_spinapp(app(**no_db), ctx), "per-replica SQLite"),
        ("3 replicas, database_url as a plain value: refused",
         check_spinapp(app(replicas=3, enableAutoscaling=None, variables=variable(
             "database_url", value="postgres://u:p@db.example.internal:5432/o")), ctx),
         "per-replica SQLite"),
        ("3 replicas, default database on libSQL: accepted",
         check_spinapp(app(replicas=3, enableAutoscaling=None, runtimeConfig=libsql, **no_db), ctx),
         None),
        ("1 replica, no database_url: accepted",
         check_spinapp(app(replicas=1, enableAutoscaling=None, **no_db), ctx), None),
        ('replicas: "three": refused by the CRD',
         check_spinapp(app(replicas="three", enableAutoscaling=None), ctx), "CRD: spec/replicas"),
        ("unknown spec field: refused by the CRD",
         check_spinapp(app(replica=3), ctx), "CRD: spec: Additional properties"),
        ("replicas with enableAutoscaling: refused (webhook rule)",
         check_spinapp(app(replicas=3), ctx), "cannot be set when enableAutoscaling"),
        ("undeclared variable: refused",
         check_spinapp(app(variables=variable("db_password", value="x")), ctx), "not declared"),
        ("required jwt_secret missing: refused",
         check_spinapp(app(drop_vars={"jwt_secret"}), ctx), "jwt_secret is required"),
        ("secret jwt_secret as a plain value: refused",
         check_spinapp(app(variables=variable("jwt_secret", value="x" * 40)), ctx),
         "never a plain value"),
        ("app_env=prod: refused by schemas/config.json",
         check_spinapp(app(variables=variable("app_env", value="prod")), ctx), "is not one of"),
        ("autoscaled SpinApp without an HPA: refused",
         check_autoscalers([], [good]), "no HorizontalPodAutoscaler"),
        ("example Secret with a real-looking value: refused",
         check_secret_example({"stringData": {"jwt_secret": "s3cr3t" * 8}}, "Secret"),
         "does not look like a placeholder"),
        ("runtime config with an unknown table: refused",
         check_runtime_config({"sqlite_databse": {}}, "rc"), "unknown top-level key"),
        ("libSQL over libsql:// and an extra key: refused",
         check_runtime_config({"sqlite_database": {"default": {
             "type": "libsql", "url": "libsql://x", "token": PLACEHOLDER, "tls": True}}}, "rc"),
         "url must start with https://"),
        ("markdown with `spin cloud frobnicate`: refused",
         check_markdown("```sh\nspin cloud frobnicate --app x\n```\n", "md", DEPLOY),
         "not an allow-listed"),
        ("markdown with `spin registry login -p`: refused",
         check_markdown("```sh\nFOO=1 spin registry login -u me -p hunter2 ghcr.io\n```\n",
                        "md", DEPLOY), "does not take -p"),
        ("markdown with a dangling relative link: refused",
         check_markdown("see [x](nope/missing.yaml)\n", "md", DEPLOY), "does not resolve"),
    ]
    if crd is None:
        cases = [c for c in cases if "by the CRD" not in c[0]]
        skip(f"the SpinApp CRD cases of deploy/check.py --self-test: {crd_note}")
    if ctx["config_schema"] is None:  # the value check needs the app's schema
        cases = [c for c in cases if "config.json" not in c[0]]
        print("note  schemas/config.json absent: plain values not checked")
    passed = failed = 0
    for what, errors, expect in cases:
        ok = (not errors) if expect is None else any(expect in e for e in errors)
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
        if not ok:
            for e in errors or ["(no error reported)"]:
                print(f"      {e}")
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def skip(what):
    """A check that cannot run says so loudly and is counted (tools/skipped.sh)."""
    print(f"SKIP  {what}")
    subprocess.run([str(ROOT / "tools" / "skipped.sh"), what], cwd=ROOT, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crd", type=Path,
                        default=Path(os.environ["SPINAPP_CRD"]) if os.environ.get("SPINAPP_CRD")
                        else CRD_DEFAULT,
                        help=f"SpinApp CRD YAML (default: $SPINAPP_CRD or {CRD_DEFAULT})")
    parser.add_argument("--self-test", action="store_true",
                        help="check that known-bad manifests are refused")
    parser.add_argument("--require-crd", action="store_true",
                        help="fail when the SpinApp CRD is absent instead of skipping")
    args = parser.parse_args()
    if args.require_crd and not args.crd.exists():
        print(f"FAIL  the SpinApp CRD is required and absent: {args.crd}")
        return 1
    if args.self_test:
        return 0 if self_test(args.crd) else 1
    passed = failed = 0
    for name, errors in run_checks(args.crd):
        if name == "SKIP":
            skip(errors[0])
            continue
        print(f"{'ok  ' if not errors else 'FAIL'}  {name}")
        for e in errors:
            print(f"      {e}")
        passed, failed = passed + (not errors), failed + bool(errors)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
