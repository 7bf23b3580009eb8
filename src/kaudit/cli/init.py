"""`kaudit init [DIR]`: a starter configuration (and, with --keys, the checkpoint key
pair) for a first run, every path under DIR."""

from __future__ import annotations

from pathlib import Path

import click

from kaudit.cli.common import handle_errors
from kaudit.errors import UsageError

_STARTER = """\
# kaudit starter configuration, written by `kaudit init`. Paths are relative to the
# directory kaudit runs in. More complete setups: examples/ in kaudit's repository.
#
#   kaudit check-config {config}
#   kaudit generate -c {config} --count 1000     # some realistic events
#   kaudit run -c {config} --once                # export them, then exit
#   kaudit verify {data}{verify_keys}

# The audit log is in <data_dir>/log; cursors, dead letters and metrics beside it.
data_dir: {data}
cluster: {{id: my-cluster, environment: development}}

audit:
  failure_policy: fail_open          # or fail_closed: refuse what cannot be audited
  log: {{type: local, fsync: batch}}
  events: ["*"]                      # globs select event types, e.g. "topic.*"
  integrity:
    # HMAC-SHA256 chain: set AUDIT_SIGNING_KEY (openssl rand -hex 32), then enable both.
    signing: {{enabled: false, key_env_var: AUDIT_SIGNING_KEY}}
    chain: {{enabled: false}}
{checkpoints}
  destinations:
    - type: file
      name: export
      path: {export}

# gateway:                           # the audit gateway in front of your cluster
#   upstream: kafka:9092
#   listen: 127.0.0.1:9192
"""


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keys", is_flag=True, help="Also write an Ed25519 key pair and sign checkpoints.")
@click.option("--force", is_flag=True, help="Replace an existing kaudit.yaml.")
@handle_errors
def init(directory: Path, keys: bool, force: bool) -> None:
    """Write DIR/kaudit.yaml, a starter configuration whose log and export are under DIR
    (default: the working directory); with --keys, also DIR/audit.key (0600) and
    DIR/audit.pub, and checkpoints signed with them."""
    from kaudit.integrity.keys import generate

    config = directory / "kaudit.yaml"
    if config.exists() and not force:
        raise UsageError(f"{config} exists: pass --force to replace it")
    directory.mkdir(parents=True, exist_ok=True)

    def under(name: str) -> str:
        return f"./{name}" if directory == Path(".") else str(directory / name)

    checkpoints = "    checkpoints: {enabled: false}   # kaudit init --keys: signed checkpoints"
    verify_keys = ""
    if keys:
        pair = generate(directory / "audit", "kaudit", force=force)
        checkpoints = (
            "    checkpoints:                     # Ed25519-signed Merkle checkpoints\n"
            f"      {{enabled: true, key_file: {under('audit.key')}, every_seconds: 60}}"
        )
        verify_keys = f" --public-key {under('audit.pub')}"
        click.echo(f"kaudit init: wrote {pair.private} (0600) and {pair.public}", err=True)
    config.write_text(
        _STARTER.format(
            config=under("kaudit.yaml"),
            data=under("kaudit-data"),
            export=under("kaudit-export/audit.jsonl"),
            checkpoints=checkpoints,
            verify_keys=verify_keys,
        )
    )
    click.echo(f"kaudit init: wrote {config}; next: kaudit check-config {config}", err=True)
