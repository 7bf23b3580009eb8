"""RFC 6962 / 9162 Merkle hashing: reference vectors, proofs that verify and proofs that must not.

The vectors are the Certificate Transparency ones (the same leaves, roots and proofs in
google/certificate-transparency and transparency-dev/merkle proof/verify_test.go).
Independently of them, the tests compare with a direct transcription of the RFC's
recursive definitions (MTH, PATH, SUBPROOF) written here, not taken from the module.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kaudit.integrity.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]
ROOTS = [  # ROOTS[n - 1] is the root of the first n leaves
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
INCLUSION = [  # (index, size, proof), 0-based indices
    (0, 8, [
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ]),
    (5, 8, [
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]),
    (2, 3, [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    ]),
    (1, 5, [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]),
]  # fmt: skip
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ]),
    (6, 8, [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]),
    (2, 5, [
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    ]),
    (6, 7, [
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    ]),
]  # fmt: skip
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
VECTOR_HASHES = leaf_hashes(LEAVES)


# --- the RFC's recursive definitions, transcribed for comparison --------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over leaf *data*."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def rfc_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b)."""
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = _k(n)
    if m <= k:
        return [*rfc_subproof(m, d[:k], b), rfc_mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), rfc_mth(d[:k])]


def _data(n: int, salt: int = 0) -> list[bytes]:
    return [f"event {salt}/{i}".encode() for i in range(n)]


# --- hashing -----------------------------------------------------------------------


def test_leaf_and_node_hashes_use_the_rfc_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )
    assert leaf_hashes([b"a", b"b"]) == [leaf_hash(b"a"), leaf_hash(b"b")]


def test_the_empty_tree_root_is_the_sha256_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(n: int) -> None:
    assert root(VECTOR_HASHES[:n]) == ROOTS[n - 1]


def test_root_matches_the_recursive_rfc_definition_for_every_size_up_to_200() -> None:
    data = _data(200)
    hashes = leaf_hashes(data)
    for n in range(201):
        assert root(hashes[:n]) == rfc_mth(data[:n]), n


# --- inclusion proofs ----------------------------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_proofs_match_and_verify_against_the_vectors(
    index: int, size: int, proof: list[bytes]
) -> None:
    assert inclusion_proof(VECTOR_HASHES, index, size) == proof
    assert verify_inclusion(VECTOR_HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_corrupted_inclusion_proofs_from_the_vectors_fail(
    index: int, size: int, proof: list[bytes]
) -> None:
    leaf, good_root = VECTOR_HASHES[index], ROOTS[size - 1]
    probes: list[tuple[str, bytes, int, int, list[bytes], bytes]] = [
        ("index - 1", leaf, index - 1, size, proof, good_root),
        ("index + 1", leaf, index + 1, size, proof, good_root),
        ("index ^ 2", leaf, index ^ 2, size, proof, good_root),
        ("size * 2", leaf, index, size * 2, proof, good_root),
        ("size // 2", leaf, index, size // 2, proof, good_root),
        ("wrong leaf", leaf_hash(b"WrongLeaf"), index, size, proof, good_root),
        ("empty root", leaf, index, size, proof, EMPTY_ROOT),
        ("random root", leaf, index, size, proof, SOME_HASH),
        ("trailing garbage", leaf, index, size, [*proof, b""], good_root),
        ("trailing root", leaf, index, size, [*proof, good_root], good_root),
        ("preceding garbage", leaf, index, size, [b"", *proof], good_root),
        ("preceding root", leaf, index, size, [good_root, *proof], good_root),
        ("removed component", leaf, index, size, proof[:-1], good_root),
    ]
    if len(proof) > 1:
        probes.append(("inserted", leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], good_root))
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"proof[{i}] bit flip", leaf, index, size, flipped, good_root))
    accepted = [name for name, lf, ix, sz, pr, rt in probes if verify_inclusion(lf, ix, sz, pr, rt)]
    assert accepted == []


def test_single_leaf_tree_has_an_empty_inclusion_proof() -> None:
    lh = leaf_hash(b"data")
    assert inclusion_proof([lh], 0, 1) == []
    assert verify_inclusion(lh, 0, 1, [], lh)
    assert not verify_inclusion(lh, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], lh)
    for index, size in ((0, 0), (1, 0), (1, 1), (2, 1), (-1, 1)):
        assert not verify_inclusion(SOME_HASH, index, size, [], SOME_HASH)


def test_inclusion_proofs_equal_the_rfc_path_for_every_leaf_of_trees_up_to_64() -> None:
    data = _data(64, salt=1)
    hashes = leaf_hashes(data)
    for n in range(1, 65):
        tree_root = root(hashes[:n])
        for i in range(n):
            proof = inclusion_proof(hashes, i, n)
            assert proof == rfc_path(i, data[:n]), (i, n)
            assert verify_inclusion(hashes[i], i, n, proof, tree_root), (i, n)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 200), salt=st.integers(0, 2**32), seed=st.integers(0, 2**32))
def test_every_inclusion_proof_verifies_and_fails_for_a_wrong_leaf_index_or_root(
    n: int, salt: int, seed: int
) -> None:
    hashes = leaf_hashes(_data(n, salt))
    tree_root = root(hashes)
    other_root = root(leaf_hashes(_data(n, salt + 1)))
    rng = random.Random(seed)
    for i in range(n):
        proof = inclusion_proof(hashes, i, n)
        assert verify_inclusion(hashes[i], i, n, proof, tree_root)
        wrong_leaf = hashes[(i + 1) % n] if n > 1 else leaf_hash(b"forged")
        assert not verify_inclusion(wrong_leaf, i, n, proof, tree_root)
        assert not verify_inclusion(hashes[i], i, n, proof, other_root)
        if n > 1:
            j = rng.choice([x for x in range(n) if x != i])
            assert not verify_inclusion(hashes[i], j, n, proof, tree_root)


def test_inclusion_proof_rejects_impossible_arguments() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(VECTOR_HASHES, 8, 8)
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(VECTOR_HASHES, -1, 8)
    with pytest.raises(ValueError, match="more than the 8 leaf hashes"):
        inclusion_proof(VECTOR_HASHES, 0, 9)


# --- consistency proofs --------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_proofs_match_and_verify_against_the_vectors(
    old: int, new: int, proof: list[bytes]
) -> None:
    assert consistency_proof(VECTOR_HASHES, old, new) == proof
    assert verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


@pytest.mark.parametrize(("old", "new", "proof"), [c for c in CONSISTENCY if c[2]])
def test_corrupted_consistency_proofs_from_the_vectors_fail(
    old: int, new: int, proof: list[bytes]
) -> None:
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    wrong = hashlib.sha256(b"WrongRoot").digest()
    probes: list[tuple[str, int, int, bytes, bytes, list[bytes]]] = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new // 2", old, new // 2, r1, r2, proof),
        ("wrong old root", old, new, wrong, r2, proof),
        ("wrong new root", old, new, r1, wrong, proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing garbage", old, new, r1, r2, [*proof, b""]),
        ("trailing old root", old, new, r1, r2, [*proof, r1]),
        ("trailing new root", old, new, r1, r2, [*proof, r2]),
        ("preceding garbage", old, new, r1, r2, [b"", *proof]),
        ("preceding old root", old, new, r1, r2, [r1, *proof]),
        ("preceding new root", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated", old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((f"proof[{i}] bit flip", old, new, r1, r2, flipped))
    accepted = [name for name, m, n, a, b, p in probes if verify_consistency(m, n, a, b, p)]
    assert accepted == []


def test_consistency_edge_cases_equal_sizes_and_the_empty_tree() -> None:
    r = ROOTS[3]
    assert verify_consistency(4, 4, r, r, [])
    assert not verify_consistency(4, 4, r, ROOTS[4], [])
    assert not verify_consistency(4, 4, r, r, [r])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    # The only root of an empty tree is SHA-256(""); anything else is not that tree.
    assert not verify_consistency(0, 5, SOME_HASH, ROOTS[4], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [EMPTY_ROOT])
    # Trees do not shrink.
    assert not verify_consistency(5, 4, ROOTS[4], ROOTS[3], [])
    assert not verify_consistency(2, 1, ROOTS[1], ROOTS[0], [])
    assert not verify_consistency(-1, 4, EMPTY_ROOT, r, [])
    assert consistency_proof(VECTOR_HASHES, 0, 8) == []
    assert consistency_proof(VECTOR_HASHES, 8, 8) == []
    with pytest.raises(ValueError, match="no consistency proof"):
        consistency_proof(VECTOR_HASHES, 5, 4)
    with pytest.raises(ValueError, match="more than the 8 leaf hashes"):
        consistency_proof(VECTOR_HASHES, 2, 9)


def test_consistency_proofs_equal_the_rfc_subproof_for_all_sizes_up_to_48() -> None:
    data = _data(48, salt=2)
    hashes = leaf_hashes(data)
    roots = [root(hashes[:n]) for n in range(49)]
    for n in range(1, 49):
        for m in range(1, n):
            proof = consistency_proof(hashes, m, n)
            assert proof == rfc_subproof(m, data[:n], True), (m, n)
            assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 200), salt=st.integers(0, 2**32), seed=st.integers(0, 2**32))
def test_every_consistency_proof_verifies_and_fails_when_the_old_tree_was_altered(
    n: int, salt: int, seed: int
) -> None:
    data = _data(n, salt)
    hashes = leaf_hashes(data)
    roots = [root(hashes[:m]) for m in range(n + 1)]
    rng = random.Random(seed)
    for m in range(n + 1):
        proof = consistency_proof(hashes, m, n)
        assert verify_consistency(m, n, roots[m], roots[n], proof), (m, n)
        if m == 0:
            continue
        # The old tree as a tamperer would have had it: one of its events changed.
        altered = list(hashes[:m])
        victim = rng.randrange(m)
        altered[victim] = leaf_hash(data[victim] + b" (altered)")
        assert not verify_consistency(m, n, root(altered), roots[n], proof), (m, n, victim)
        # And a new tree that rewrote history inside the old range.
        rewritten = list(hashes)
        rewritten[victim] = altered[victim]
        assert not verify_consistency(m, n, roots[m], root(rewritten), proof), (m, n)


# --- the incremental tree ------------------------------------------------------------


def test_incremental_root_equals_the_batch_root_at_every_size_up_to_300() -> None:
    hashes = leaf_hashes(_data(300, salt=3))
    tree = MerkleTree()
    for n, lh in enumerate(hashes, 1):
        tree.append(lh)
        assert tree.size == n
        assert tree.root() == root(hashes[:n]), n
        assert len(tree.frontier()) == n.bit_count()


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.integers(0, 70), max_size=12), salt=st.integers(0, 2**16))
def test_extend_by_any_chunks_equals_the_batch_root(chunks: list[int], salt: int) -> None:
    hashes = leaf_hashes(_data(sum(chunks), salt))
    tree = MerkleTree()
    start = 0
    for c in chunks:
        tree.extend(hashes[start : start + c])
        start += c
        assert tree.size == start
        assert tree.root() == root(hashes[:start])


def test_frontier_restore_resumes_where_the_writer_stopped() -> None:
    hashes = leaf_hashes(_data(130, salt=4))
    for stop in range(0, 100):
        before = MerkleTree()
        before.extend(hashes[:stop])
        saved_size, saved = before.size, before.frontier()
        resumed = MerkleTree.from_frontier(saved_size, saved)
        assert resumed.root() == before.root() == root(hashes[:stop])
        resumed.extend(hashes[stop:100])
        for lh in hashes[100:130]:
            resumed.append(lh)
        assert resumed.size == 130
        assert resumed.root() == root(hashes)


def test_from_frontier_rejects_a_frontier_that_cannot_belong_to_that_size() -> None:
    tree = MerkleTree()
    tree.extend(VECTOR_HASHES[:6])  # 6 = 4 + 2: two subtree roots
    frontier = tree.frontier()
    assert len(frontier) == 2
    with pytest.raises(ValueError, match="frontier of 3 hashes, got 2"):
        MerkleTree.from_frontier(7, frontier)
    with pytest.raises(ValueError, match="not 32"):
        MerkleTree.from_frontier(6, [frontier[0], b"short"])
    with pytest.raises(ValueError, match="negative"):
        MerkleTree.from_frontier(-1, [])
    assert MerkleTree.from_frontier(0, []).root() == EMPTY_ROOT


def test_frontier_is_a_copy_and_leaf_hashes_must_be_32_bytes() -> None:
    tree = MerkleTree()
    tree.append(VECTOR_HASHES[0])
    tree.frontier().clear()
    assert tree.size == 1 and tree.root() == ROOTS[0]
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"abc")
    with pytest.raises(ValueError, match="leaf hash 1"):
        tree.extend([VECTOR_HASHES[1], b"abc"])
    assert tree.size == 1  # a rejected batch adds nothing
    assert "size=1" in repr(tree)
