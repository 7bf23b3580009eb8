"""Who a TLS certificate names, as Kafka names it: the subject as an RFC 2253 string
(what Java's `X500Principal.getName()` gives Kafka's principal builder) mapped by
`ssl.principal.mapping.rules`.

When the gateway terminates a client's TLS, the certificate names the person or
application (`certificate_principal`), while the broker authorizes whoever the gateway
connects as: its own client certificate's subject, mapped by the broker's rules, or
`User:ANONYMOUS` without one (`upstream_principal`). Both are recorded, separately.

The rules follow Kafka's syntax and behaviour (`SslPrincipalMapper`): a comma-separated
list of `DEFAULT` (the whole DN) and `RULE:pattern/replacement/[L|U]`, where `pattern`
is a regular expression the whole DN must match, `replacement` may use `$1`-style group
references (a reference to a group the pattern lacks stays literal), `\\` escapes a
character in either part, and `L` / `U` make the result lower or upper case. The first
rule that matches names the principal; a DN no rule matches names none (Kafka refuses
such a client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kaudit.config.model import GatewayConfig
from kaudit.errors import GatewayError

ANONYMOUS = "User:ANONYMOUS"

# One rule, as Kafka's grammar has it: DEFAULT; or RULE:pattern/replacement/ and an
# optional L or U, where a backslash escapes any character (so `\/` is not the end);
# or anything else (then invalid).
_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
_PARSER = re.compile(_RULE)
_GROUP_REFERENCE = re.compile(r"\$(\d+)|\\(.)|([\s\S])")

# RFC 2253's attribute keywords (Java writes any other type as its dotted OID).
_KEYWORDS = {
    x509.NameOID.COMMON_NAME: "CN",
    x509.NameOID.COUNTRY_NAME: "C",
    x509.NameOID.LOCALITY_NAME: "L",
    x509.NameOID.STATE_OR_PROVINCE_NAME: "ST",
    x509.NameOID.ORGANIZATION_NAME: "O",
    x509.NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    x509.NameOID.STREET_ADDRESS: "STREET",
    x509.NameOID.DOMAIN_COMPONENT: "DC",
    x509.NameOID.USER_ID: "UID",
}
# Characters Java escapes anywhere in a value (RFC 2253 requires the last seven; Java
# escapes `=` and `#` too), and a leading or trailing space.
_ESCAPED = frozenset(',=+<>#;"\\')


class MappingRuleError(ValueError):
    """`ssl.principal.mapping.rules` that Kafka would refuse."""


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str] | None  # None: DEFAULT
    replacement: str = ""
    case: str = ""  # "L", "U" or ""

    def apply(self, dn: str) -> str | None:
        if self.pattern is None:
            return dn
        if self.pattern.fullmatch(dn) is None:
            return None
        groups = self.pattern.groups
        name = self.pattern.sub(lambda m: _expand(self.replacement, m, groups), dn)
        if self.case == "L":
            return name.lower()
        return name.upper() if self.case == "U" else name


def _expand(replacement: str, match: re.Match[str], groups: int) -> str:
    """`replacement` for one match, as Java's `Matcher.replaceAll` reads it: `$n` takes
    as many digits as name an existing group, a reference to no group is literal text,
    and a backslash makes the next character literal."""
    out: list[str] = []
    for ref in _GROUP_REFERENCE.finditer(replacement):
        digits, escaped, plain = ref.groups()
        if digits is None:
            out.append(escaped if escaped is not None else plain)
            continue
        index, used = int(digits[0]), 1
        while used < len(digits) and index * 10 + int(digits[used]) <= groups:
            index, used = index * 10 + int(digits[used]), used + 1
        if index > groups or (groups == 0 and index != 0):
            out.append("$" + digits)  # no such group: literal, as Kafka keeps it
            continue
        out.append((match.group(index) or "") + digits[used:])
    return "".join(out)


class PrincipalMapper:
    """Kafka's `ssl.principal.mapping.rules`, parsed once: `name(dn)` is the principal's
    name (without `User:`), None when no rule matches."""

    def __init__(self, rules: str = "DEFAULT") -> None:
        self.rules = rules
        parsed = (_parse(text) for text in _split(rules))
        self._rules = tuple(rule for rule in parsed if rule is not None)

    def name(self, dn: str) -> str | None:
        for rule in self._rules:
            name = rule.apply(dn)
            if name is not None:
                return name
        return None


def _split(rules: str) -> list[str]:
    return [m.group(1) for m in _SPLITTER.finditer(rules.strip())]


def _parse(text: str) -> _Rule | None:
    """One rule; None for an empty one (ignored, as Kafka does)."""
    match = _PARSER.match(text)
    if match is None or match.end() != len(text):
        rest = text[match.end() :] if match else text
        raise MappingRuleError(
            f"invalid rule {text!r} (unmatched {rest!r}); accepted: DEFAULT or "
            "RULE:pattern/replacement/ with an optional L or U after the last slash"
        )
    default, pattern, replacement, case, _other = match.groups()
    if default is not None:
        return _Rule(None)
    if pattern is None:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise MappingRuleError(f"invalid rule {text!r}: bad pattern: {exc}") from exc
    return _Rule(compiled, replacement, case)


def check_rules(rules: str) -> str:
    """`rules` if Kafka would accept them; else MappingRuleError saying what is wrong."""
    PrincipalMapper(rules)
    return rules


# -- distinguished names --------------------------------------------------------------


def _escape(value: str) -> str:
    lead = len(value) - len(value.lstrip(" "))
    trail = len(value) - len(value.rstrip(" ")) if value.strip(" ") else 0
    out = []
    for i, c in enumerate(value):
        if c in _ESCAPED or i < lead or i >= len(value) - trail:
            out.append("\\")
        out.append(c)
    return "".join(out)


def _der_hex(attribute: x509.NameAttribute[str | bytes]) -> str:
    """`#` and the hex of the value's DER encoding, as Java writes an attribute whose
    type has no RFC 2253 keyword (e.g. emailAddress)."""
    asn1_type = getattr(attribute, "_type", None)  # the string type the CA encoded
    tag = int(getattr(asn1_type, "value", 12))
    value = attribute.value if isinstance(attribute.value, str) else ""
    codec = {30: "utf-16-be", 28: "utf-32-be"}.get(tag, "utf-8")
    body = value.encode(codec)
    if len(body) < 0x80:
        length = bytes([len(body)])
    else:
        size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(size)]) + size
    return "#" + (bytes([tag]) + length + body).hex()


def rfc2253_name(name: x509.Name) -> str:
    """The DN as Java's `X500Principal.getName()` writes it: the most specific RDN
    first, no spaces, RFC 2253 keywords, escaping as Java does."""
    rdns = []
    for rdn in reversed(name.rdns):
        avas = []
        for attribute in rdn:
            keyword = _KEYWORDS.get(attribute.oid)
            if keyword is None:
                avas.append(f"{attribute.oid.dotted_string}={_der_hex(attribute)}")
            else:
                value = attribute.value
                text = value if isinstance(value, str) else value.decode("latin-1")
                avas.append(f"{keyword}={_escape(text)}")
        rdns.append("+".join(avas))
    return ",".join(rdns)


def certificate_principal(der: bytes | None, mapper: PrincipalMapper) -> str | None:
    """`User:<name>` for the subject of a verified client certificate (DER), as a broker
    with these mapping rules names it; None without a certificate or a matching rule."""
    if not der:
        return None
    subject = x509.load_der_x509_certificate(der).subject
    name = mapper.name(rfc2253_name(subject))
    return f"User:{name}" if name is not None else None


def upstream_principal(
    cert_file: str | None, rules: str = "DEFAULT", configured: str | None = None
) -> str:
    """The principal the brokers authorize the gateway's own connections as, when the
    client does not log in with SASL: `configured` when given; else its client
    certificate's subject mapped by `rules` (the brokers' rules), else User:ANONYMOUS."""
    if configured:
        return configured
    if not cert_file:
        return ANONYMOUS
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificates(f.read())[0]
    der = cert.public_bytes(serialization.Encoding.DER)
    return certificate_principal(der, PrincipalMapper(rules)) or ANONYMOUS


def gateway_identities(config: GatewayConfig) -> tuple[PrincipalMapper, str]:
    """The mapping rules for client certificates and the gateway's own upstream
    principal, from its configuration; GatewayError naming the setting if they are bad."""
    rules = config.tls.principal_mapping_rules if config.tls else "DEFAULT"
    try:
        mapper = PrincipalMapper(rules)
    except MappingRuleError as exc:
        raise GatewayError(f"gateway.tls.principal_mapping_rules: {exc}") from exc
    upstream = config.upstream_tls
    if upstream is None:
        return mapper, ANONYMOUS
    try:
        return mapper, upstream_principal(upstream.cert_file, configured=upstream.principal)
    except (OSError, ValueError) as exc:
        raise GatewayError(
            f"gateway.upstream_tls.cert_file: cannot read the certificate's subject: {exc}"
        ) from exc
