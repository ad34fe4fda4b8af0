"""Audit the installed Python packages against known vulnerabilities (pip-audit, PyPI's advisory
service), as the test command's step. Exit 1 when a vulnerability is found; when the service cannot
be reached (a machine without network, PyPI down), say so and exit 0: the suite tests this project,
not the network outside it.

PyPI's service, not OSV (pip-audit's other one): the machines that build Ludus reach package
registries, and api.osv.dev may be out of reach from them. A package PyPI does not list (a local
build, a version only on a private index) cannot be audited; it is listed as skipped, not failed.

Usage: python scripts/dependency_audit.py [extra pip-audit arguments]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

AUDIT = [
    sys.executable, "-m", "pip_audit", "--local", "--skip-editable", "--vulnerability-service",
    "pypi", "--progress-spinner", "off", "--format", "json",
]  # fmt: skip


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "audit.json"
        run = subprocess.run(
            [*AUDIT, "--output", str(report_path), *argv], capture_output=True, text=True
        )
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report is None:
        # No report: pip-audit stopped before auditing (no route to the service, a DNS failure).
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"dependency audit skipped: the advisory service could not be reached ({last})")
        return 0
    dependencies = report.get("dependencies", [])
    vulnerable = [d for d in dependencies if d.get("vulns")]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            print(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
    audited = len(dependencies) - len(skipped)
    print(
        f"dependency audit: {audited} packages audited, {len(vulnerable)} vulnerable, "
        f"{len(skipped)} not listed on PyPI (not audited)"
    )
    if dependencies and not audited:
        print("nothing was audited: the service knew none of these versions (a proxy or mirror?)")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
