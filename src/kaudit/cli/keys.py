"""`kaudit keys generate`: the Ed25519 key pair that signs Merkle checkpoints
(`kaudit.integrity.keys`)."""

from __future__ import annotations

from pathlib import Path

import click

from kaudit.cli.common import handle_errors


@click.group()
def keys() -> None:
    """Manage the Ed25519 keys that sign Merkle checkpoints."""


@keys.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Writes OUT.key (private, mode 0600) and OUT.pub (public, share it).",
)
@click.option("--name", help="The key's name in signed checkpoints (default: kaudit/<host>).")
@click.option("--force", is_flag=True, help="Replace existing key files.")
@handle_errors
def keys_generate(out: Path, name: str | None, force: bool) -> None:
    """Generate a signing key pair for integrity.checkpoints."""
    import socket

    from kaudit.integrity.keys import generate as generate_keys

    files = generate_keys(out, name or f"kaudit/{socket.gethostname()}", force=force)
    click.echo(f"private key: {files.private} (keep it secret; integrity.checkpoints.key_file)")
    click.echo(
        f"public key:  {files.public} (give it to verifiers: kaudit verify "
        f"--public-key {files.public})"
    )
    click.echo(f"verifier:    {files.verifier.text()}")
