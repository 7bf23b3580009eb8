package kaudit.broker;

import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.common.utils.SecurityUtils;

/**
 * A few principals (super users, the brokers' own, the auditor's), matched on the request
 * path by type and name: no string is built, and a principal builder's subclass of
 * {@link KafkaPrincipal} matches as StandardAuthorizer would match it (by what it names).
 */
final class Principals {

    private final KafkaPrincipal[] principals;

    private Principals(List<KafkaPrincipal> principals) {
        this.principals = principals.toArray(new KafkaPrincipal[0]);
    }

    /** Parses {@code Type:name} entries; a bad one is an {@link IllegalArgumentException}. */
    static Principals of(Iterable<String> names) {
        List<KafkaPrincipal> parsed = new ArrayList<>();
        for (String name : names) {
            parsed.add(SecurityUtils.parseKafkaPrincipal(name.trim()));
        }
        return new Principals(parsed);
    }

    static Principals of(KafkaPrincipal principal) {
        return new Principals(List.of(principal));
    }

    boolean isEmpty() {
        return principals.length == 0;
    }

    boolean contains(KafkaPrincipal principal) {
        for (KafkaPrincipal known : principals) {
            if (known.getName().equals(principal.getName())
                    && known.getPrincipalType().equals(principal.getPrincipalType())) {
                return true;
            }
        }
        return false;
    }

    @Override
    public String toString() {
        List<String> names = new ArrayList<>();
        for (KafkaPrincipal principal : principals) {
            names.add(principal.toString());
        }
        return String.join(";", names);
    }
}
