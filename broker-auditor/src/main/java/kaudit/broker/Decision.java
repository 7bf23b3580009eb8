package kaudit.broker;

import java.net.InetAddress;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;

/**
 * One authorization decision, as much of it as the caller's thread copies out of Kafka's
 * objects: who asked (principal, client address and id, listener and security protocol),
 * through which request (API key and version, correlation id) for what (operation,
 * resource pattern), and the answer. Turned into JSON on the sender's thread. A denial may
 * name the operation the same request was also refused on the same resource ({@code
 * alsoDenied}: the DESCRIBE check Kafka makes to decide whether to reveal that it exists).
 */
final class Decision {

    final long timeMs;
    final String principal;
    final InetAddress clientAddress;
    final String listener;
    final String securityProtocol;
    final String clientId;
    final int apiKey;
    final int apiVersion;
    final int correlationId;
    final String operation;
    final String resourceType;
    final String patternType;
    final String resourceName;
    final boolean allowed;
    final String alsoDenied;

    Decision(long timeMs, AuthorizableRequestContext context, Action action, boolean allowed) {
        this(timeMs, context, action, allowed, null);
    }

    Decision(long timeMs, AuthorizableRequestContext context, Action action, boolean allowed,
            String alsoDenied) {
        this.timeMs = timeMs;
        this.principal = context.principal().toString();
        this.clientAddress = context.clientAddress();
        this.listener = context.listenerName();
        this.securityProtocol = String.valueOf(context.securityProtocol());
        this.clientId = context.clientId();
        this.apiKey = context.requestType();
        this.apiVersion = context.requestVersion();
        this.correlationId = context.correlationId();
        this.operation = action.operation().name();
        this.resourceType = action.resourcePattern().resourceType().name();
        this.patternType = action.resourcePattern().patternType().name();
        this.resourceName = action.resourcePattern().name();
        this.allowed = allowed;
        this.alsoDenied = alsoDenied;
    }

    /** The fields every record of a request shares, as JSON members (no braces). */
    void writeRequest(Json json) {
        json.field("principal", principal)
                .field("client_address", clientAddress == null ? null : clientAddress.getHostAddress())
                .field("listener", listener)
                .field("security_protocol", securityProtocol)
                .field("client_id", clientId)
                .field("api_key", apiKey)
                .field("api_version", apiVersion)
                .field("operation", operation)
                .field("resource_type", resourceType)
                .field("pattern_type", patternType)
                .field("resource_name", resourceName)
                .field("allowed", allowed);
        if (alsoDenied != null) {
            json.field("also_denied", alsoDenied);
        }
    }
}
