#!/usr/bin/env python3
"""Summarises a schemathesis NDJSON report (run.sh writes one per run).

    summary.py REPORT.ndjson ENGINE

Prints the test cases per operation, each distinct failure (operation, check,
message, the response status, the test case id and a curl command that
replays the request, with the token left as $ST_TOKEN), any error, and a
closing line `schemathesis: N passed, M failed`. Exits 1 when anything
failed or errored. Standard library only.
"""
import base64
import json
import shlex
import sys
from collections import Counter, defaultdict


def curl(request):
    """A shell command that sends `request` again (words already quoted)."""
    words = ["curl", "-sS", "-i", "-X", shlex.quote(request["method"])]
    for name, values in (request.get("headers") or {}).items():
        for value in values:
            if name.lower() == "authorization":
                words.append(f'-H "{name}: Bearer $ST_TOKEN"')
            elif value == "":
                words.append("-H " + shlex.quote(f"{name};"))  # curl's way to send an empty value
            else:
                words.append("-H " + shlex.quote(f"{name}: {value}"))
    body = request.get("body")
    if body is not None:
        raw = base64.b64decode(body["$base64"]) if isinstance(body, dict) and "$base64" in body else str(body).encode()
        try:
            text = raw.decode("utf-8")
            printable = all(ord(c) >= 0x20 or c in "\t\n\r" for c in text)
        except UnicodeDecodeError:
            printable = False
        if printable:
            words.append("--data-binary " + shlex.quote(text))
        else:
            words.append(f"--data-binary @<(printf %s {base64.b64encode(raw).decode()} | base64 -d)")
    words.append(shlex.quote(request["uri"]))
    return " ".join(words)


def content(response):
    body = response.get("content")
    if isinstance(body, dict) and "$base64" in body:
        return base64.b64decode(body["$base64"]).decode("utf-8", "replace")
    return "" if body is None else str(body)


def problem_type(text):
    """The RFC 9457 `type` of a problem answer, to tell failures apart."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get("type") if isinstance(value, dict) else None


def component(message):
    """`parameter `x-request-id` in header` of an `Invalid component:` line."""
    for line in message.splitlines():
        if line.startswith("Invalid component:"):
            return line.split(":", 1)[1].split(" - ")[0].strip()
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, engine = sys.argv[1:]
    cases = defaultdict(dict)  # operation -> case id -> failed?
    failures = {}  # (operation, code, message) -> details
    failure_counts = Counter()
    errors = []
    phases = {}
    running_time = None
    version = seed = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            kind, data = next(iter(event.items()))
            if kind == "Initialize":
                version, seed = data.get("schemathesis_version"), data.get("seed")
            elif kind == "PhaseFinished":
                phases[data["phase"]["name"]] = data["status"]
            elif kind == "EngineFinished":
                running_time = data.get("running_time")
            elif kind in ("NonFatalError", "FatalError"):
                value = data.get("value") or data.get("exception") or data
                errors.append(f"{data.get('label', kind)}: {json.dumps(value)[:400]}")
            elif kind == "ScenarioFinished":
                recorder = data["recorder"]
                interactions = recorder.get("interactions", {})
                for case_id, checks in recorder.get("checks", {}).items():
                    case = recorder["cases"].get(case_id, {}).get("value", {})
                    operation = f"{case.get('method', '?')} {case.get('path', recorder['label'])}"
                    interaction = interactions.get(case_id) or {}
                    response = interaction.get("response") or {}
                    failed = False
                    for check in checks:
                        if check["status"] != "failure":
                            continue
                        failed = True
                        info = check.get("failure_info", {}).get("failure", {})
                        message = info.get("message", "")
                        text = content(response)
                        key = (
                            operation,
                            info.get("code", "?"),
                            check["name"],
                            response.get("status_code"),
                            problem_type(text),
                            component(message),
                        )
                        failure_counts[key] += 1
                        if key not in failures:
                            failures[key] = {
                                "title": info.get("title", ""),
                                "message": message,
                                "phase": data.get("phase"),
                                "case": case_id,
                                "request": interaction.get("request"),
                                "response": text,
                            }
                    cases[operation][case_id] = cases[operation].get(case_id, False) or failed

    passed = sum(1 for op in cases.values() for failed in op.values() if not failed)
    failed = sum(1 for op in cases.values() for failed in op.values() if failed)
    took = f"{running_time:.1f} s" if running_time is not None else "unfinished"
    print()
    print(f"==== schemathesis {version} on {engine}: seed {seed}, {took} ====")
    print("phases: " + ", ".join(f"{name} {status}" for name, status in phases.items()))
    documented = {op: v for op, v in cases.items() if len(v) > 1 or any(v.values())}
    others = [v for op, v in cases.items() if op not in documented]
    label = "other methods, paths (probes)"
    width = max([len(op) for op in documented] + [len(label)])
    print(f"{'operation':<{width}}  {'cases':>6}  {'failed':>6}")
    for operation in sorted(documented, key=lambda op: (op.split(" ", 1)[1], op)):
        values = documented[operation].values()
        print(f"{operation:<{width}}  {len(values):>6}  {sum(values):>6}")
    if others:
        print(f"{label:<{width}}  {len(others):>6}  {sum(any(v.values()) for v in others):>6}")
    if failures:
        print(f"\n{len(failures)} distinct failure(s) (operation, check, status, problem type, component):")
        for n, (key, d) in enumerate(failures.items(), 1):
            operation, code, check, status, _, _ = key
            print(f"\n{n}. {operation}: {code} {check} ({d['title']}), {failure_counts[key]} case(s)")
            for text in d["message"].splitlines():
                print(f"   {text}")
            print(f"   first case {d['case']} ({d['phase']} phase), answered {status}: {d['response'][:400]}")
            if d["request"]:
                print(f"   {curl(d['request'])}")
    for error in errors:
        print(f"\nERROR {error}")
    print()
    print(f"schemathesis: {passed} passed, {failed} failed")
    return 1 if failures or errors or running_time is None else 0


if __name__ == "__main__":
    sys.exit(main())
