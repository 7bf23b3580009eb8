package kaudit.broker;

import java.net.InetAddress;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.security.auth.KafkaPrincipal;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;

/**
 * Allowed READ/WRITE decisions of one client on one resource, counted over a window (as
 * kaudit's gateway counts produce and fetch). Only touched inside the map's compute
 * functions, which hold the key's lock, so plain fields are safe.
 */
final class Tally {

    /** Who counts towards one tally: the client (principal, address, listener, client id),
     * the API and the operation on the resource. Made of Kafka's own objects. */
    record Key(
            KafkaPrincipal principal,
            InetAddress address,
            String listener,
            String clientId,
            int apiKey,
            AclOperation operation,
            ResourcePattern resource) {

        Key(AuthorizableRequestContext context, Action action) {
            this(context.principal(), context.clientAddress(), context.listenerName(),
                    context.clientId(), context.requestType(), action.operation(),
                    action.resourcePattern());
        }
    }

    /** One window's count, taken when the window closes. */
    record Snapshot(Decision sample, long count, long firstMs, long lastMs) {}

    private final Decision sample;
    private long count;
    private long firstMs;
    private long lastMs;

    Tally(Decision sample) {
        this.sample = sample;
    }

    Tally hit(long nowMs) {
        if (count == 0) {
            firstMs = nowMs;
        }
        count++;
        lastMs = nowMs;
        return this;
    }

    /** This window's count, reset for the next; null when there was none. */
    Snapshot drain() {
        if (count == 0) {
            return null;
        }
        Snapshot snapshot = new Snapshot(sample, count, firstMs, lastMs);
        count = 0;
        return snapshot;
    }
}
