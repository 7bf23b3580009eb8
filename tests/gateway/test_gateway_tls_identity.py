"""Client certificates are named as Kafka names them: the subject as Java's
`X500Principal.getName()` writes it (RFC 2253; the expected strings below are what the
JDK printed for these names), mapped by `ssl.principal.mapping.rules` with the cases of
Kafka's own SslPrincipalMapperTest."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kaudit.config.gateway import GatewayConfig
from kaudit.errors import GatewayError
from kaudit.gateway.tls_identity import (
    MappingRuleError,
    PrincipalMapper,
    certificate_principal,
    gateway_identities,
    rfc2253_name,
    upstream_principal,
)

A = x509.NameAttribute


@pytest.mark.parametrize(
    "rules",
    [
        "DEFAULT",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
        "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
        "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
        "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
        "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
        "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        "",
        ",   , , ,      , , ,   ",
        "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
    ],
)
def test_valid_rules_parse(rules: str) -> None:
    PrincipalMapper(rules)


@pytest.mark.parametrize(
    "rules",
    [
        "default",
        "DEFAUL",
        "DEFAULT/L",
        "DEFAULT/U",
        "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
        "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
        "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
    ],
)
def test_invalid_rules_are_refused_saying_what_is_accepted(rules: str) -> None:
    with pytest.raises(MappingRuleError, match="accepted: DEFAULT or RULE:"):
        PrincipalMapper(rules)


def test_the_first_matching_rule_names_the_principal() -> None:
    mapper = PrincipalMapper(
        ", ".join(
            [
                "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
                "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
                "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
                "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
                "DEFAULT",
            ]
        )
    )
    assert mapper.name("CN=Duke,OU=ServiceUsers,O=Org,C=US") == "duke"
    assert mapper.name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US") == "duke@sme"
    assert mapper.name("cn=duke,ou=sme,dc=mycp,dc=com") == "DUKE@SME"
    assert mapper.name("cN=duke,OU=JavaSoft,O=Sun Microsystems") == "DUKE"
    assert (
        mapper.name("OU=JavaSoft,O=Sun Microsystems,C=US") == "OU=JavaSoft,O=Sun Microsystems,C=US"
    )


def test_an_escaped_comma_stays_in_the_name() -> None:
    mapper = PrincipalMapper(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT")
    assert mapper.name(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz") == r"Tkac\, Adam"


def test_no_matching_rule_names_no_one() -> None:
    assert PrincipalMapper("RULE:^CN=(.*?),OU=Apps$/$1/").name("CN=x,OU=People") is None
    assert PrincipalMapper("").name("CN=x") is None


def test_references_to_missing_groups_stay_literal() -> None:
    mapper = PrincipalMapper(r"RULE:^CN=(\w+)$/$1-$2-$12-\$1-$0/")
    assert mapper.name("CN=svc") == "svc-$2-svc2-$1-CN=svc"


def test_rfc2253_names_are_written_as_java_writes_them() -> None:
    acme = x509.Name([A(NameOID.COUNTRY_NAME, "US"), A(NameOID.ORGANIZATION_NAME, "Acme = Co"),
                      A(NameOID.COMMON_NAME, "a,b")])  # fmt: skip
    assert rfc2253_name(acme) == r"CN=a\,b,O=Acme \= Co,C=US"
    email = x509.Name([A(NameOID.COMMON_NAME, "alice"),
                       A(NameOID.EMAIL_ADDRESS, "alice@example.com")])  # fmt: skip
    assert rfc2253_name(email) == (
        "1.2.840.113549.1.9.1=#1611616c696365406578616d706c652e636f6d,CN=alice"
    )
    spaces = x509.Name([A(NameOID.COMMON_NAME, "#hash  "), A(NameOID.ORGANIZATION_NAME, "  lead")])
    assert rfc2253_name(spaces) == r"O=\ \ lead,CN=\#hash\ \ "
    specials = x509.Name(
        [A(NameOID.COMMON_NAME, 'x;y<z>w"q\\r+s'), A(NameOID.SERIAL_NUMBER, "123"),
         A(NameOID.DOMAIN_COMPONENT, "example"), A(NameOID.USER_ID, "u1"),
         A(NameOID.STREET_ADDRESS, "main"), A(NameOID.LOCALITY_NAME, "Paris"),
         A(NameOID.STATE_OR_PROVINCE_NAME, "IdF")]
    )  # fmt: skip
    assert rfc2253_name(specials) == (
        r"ST=IdF,L=Paris,STREET=main,UID=u1,DC=example,2.5.4.5=#1303313233,"
        r"CN=x\;y\<z\>w\"q\\r\+s"
    )
    unicode = x509.Name([A(NameOID.COMMON_NAME, "Ünïcode é"), A(NameOID.TITLE, "Dr")])
    assert rfc2253_name(unicode) == "2.5.4.12=#0c024472,CN=Ünïcode é"


def _certificate(subject: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_a_certificate_names_the_principal_its_rules_map_it_to() -> None:
    cert = _certificate(x509.Name([A(NameOID.ORGANIZATION_NAME, "Acme"),
                                   A(NameOID.COMMON_NAME, "billing-svc")]))  # fmt: skip
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificate_principal(der, PrincipalMapper()) == "User:CN=billing-svc,O=Acme"
    apps = PrincipalMapper("RULE:^CN=([^,]+),O=Acme$/$1/U")
    assert certificate_principal(der, apps) == "User:BILLING-SVC"
    assert certificate_principal(der, PrincipalMapper("RULE:^CN=x$/x/")) is None
    assert certificate_principal(None, apps) is None


def test_the_gateways_upstream_principal(tmp_path: Path) -> None:
    cert = _certificate(x509.Name([A(NameOID.COMMON_NAME, "kaudit-gateway")]))
    path = tmp_path / "gateway.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert upstream_principal(str(path)) == "User:CN=kaudit-gateway"
    assert upstream_principal(str(path), configured="User:gateway") == "User:gateway"
    assert upstream_principal(None) == "User:ANONYMOUS"


def test_bad_rules_in_the_configuration_are_refused_naming_the_setting() -> None:
    config = GatewayConfig.model_validate(
        {"upstream": "kafka:9092",
         "tls": {"cert_file": "gw.pem", "key_file": "gw.key",
                 "principal_mapping_rules": "RULE:^CN=(.*)$/$1/X"}}
    )  # fmt: skip
    with pytest.raises(GatewayError, match=r"gateway\.tls\.principal_mapping_rules: invalid"):
        gateway_identities(config)
    plain = GatewayConfig.model_validate({"upstream": "kafka:9092"})
    assert gateway_identities(plain)[1] == "User:ANONYMOUS"
