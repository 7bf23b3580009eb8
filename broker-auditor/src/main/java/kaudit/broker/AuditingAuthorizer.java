package kaudit.broker;

import java.io.IOException;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.stream.Collectors;
import org.apache.kafka.common.Endpoint;
import org.apache.kafka.common.Reconfigurable;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.metrics.Monitorable;
import org.apache.kafka.common.metrics.PluginMetrics;
import org.apache.kafka.metadata.authorizer.AclMutator;
import org.apache.kafka.metadata.authorizer.ClusterMetadataAuthorizer;
import org.apache.kafka.metadata.authorizer.StandardAcl;
import org.apache.kafka.metadata.authorizer.StandardAuthorizer;
import org.apache.kafka.server.authorizer.Action;
import org.apache.kafka.server.authorizer.AuthorizableRequestContext;
import org.apache.kafka.server.authorizer.AuthorizationResult;
import org.apache.kafka.server.authorizer.AuthorizerServerInfo;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Kafka's StandardAuthorizer, with a record of its decisions sent to kaudit.
 *
 * <p>Every call is delegated to a StandardAuthorizer, which stays the one that decides and
 * the one that holds the ACLs: the KRaft hooks (ACL mutator, snapshot and record loading,
 * initial load) and the ACL API go to it unchanged, so ACL behaviour is Kafka's own. After a
 * decision, {@link DecisionRecorder} keeps what the configuration selects; it never blocks
 * and never throws into {@code authorize()}: a full queue drops the decision and counts it.
 * Configured with {@code authorizer.class.name=kaudit.broker.AuditingAuthorizer} on brokers
 * and controllers; its own settings are the {@code kaudit.audit.*} properties
 * ({@link AuditorConfig}). One of them, {@code kaudit.audit.include.data.access}, is a dynamic
 * broker config: Kafka passes its changes to {@link #reconfigure}.
 */
public final class AuditingAuthorizer
        implements ClusterMetadataAuthorizer, Monitorable, Reconfigurable {

    private static final Logger LOG = LoggerFactory.getLogger(AuditingAuthorizer.class);
    private final StandardAuthorizer delegate = new StandardAuthorizer();
    private DecisionRecorder recorder;
    private PluginMetrics metrics;

    @Override
    public void configure(Map<String, ?> configs) {
        delegate.configure(configs);
        recorder = new DecisionRecorder(AuditorConfig.from(configs), superUsers(configs));
        if (metrics != null) {
            recorder.registerMetrics(metrics);
        }
    }

    @Override
    public Set<String> reconfigurableConfigs() {
        return Set.of(AuditorConfig.INCLUDE_DATA_ACCESS);
    }

    @Override
    public void validateReconfiguration(Map<String, ?> configs) {
        AuditorConfig.includeDataAccess(configs);
    }

    @Override
    public void reconfigure(Map<String, ?> configs) {
        boolean include = AuditorConfig.includeDataAccess(configs);
        recorder.includeDataAccess(include);
        LOG.info("kaudit broker auditor: allowed produce and fetch are {} ({}={})",
                include ? "counted" : "no longer counted", AuditorConfig.INCLUDE_DATA_ACCESS, include);
    }

    @Override
    public void withPluginMetrics(PluginMetrics pluginMetrics) {
        delegate.withPluginMetrics(pluginMetrics);
        metrics = pluginMetrics;
        if (recorder != null) {
            recorder.registerMetrics(pluginMetrics);
        }
    }

    @Override
    public Map<Endpoint, ? extends CompletionStage<Void>> start(AuthorizerServerInfo serverInfo) {
        Map<Endpoint, ? extends CompletionStage<Void>> ready = delegate.start(serverInfo);
        recorder.start(serverInfo);
        return ready;
    }

    @Override
    public List<AuthorizationResult> authorize(
            AuthorizableRequestContext context, List<Action> actions) {
        List<AuthorizationResult> results = delegate.authorize(context, actions);
        recorder.observe(context, actions, results);
        return results;
    }

    @Override
    public Iterable<AclBinding> acls(AclBindingFilter filter) {
        return delegate.acls(filter);
    }

    @Override
    public int aclCount() {
        return delegate.aclCount();
    }

    @Override
    public void setAclMutator(AclMutator aclMutator) {
        delegate.setAclMutator(aclMutator);
    }

    @Override
    public AclMutator aclMutatorOrException() {
        return delegate.aclMutatorOrException();
    }

    @Override
    public void completeInitialLoad() {
        delegate.completeInitialLoad();
    }

    @Override
    public void completeInitialLoad(Exception e) {
        delegate.completeInitialLoad(e);
    }

    @Override
    public void loadSnapshot(Map<Uuid, StandardAcl> acls) {
        delegate.loadSnapshot(acls);
    }

    @Override
    public void addAcl(Uuid id, StandardAcl acl) {
        delegate.addAcl(id, acl);
    }

    @Override
    public void removeAcl(Uuid id) {
        delegate.removeAcl(id);
    }

    @Override
    public void close() throws IOException {
        try {
            if (recorder != null) {
                recorder.close();
            }
        } finally {
            delegate.close();
        }
    }

    /** The principals of {@code super.users}, as StandardAuthorizer reads them. */
    private static Set<String> superUsers(Map<String, ?> configs) {
        Object value = configs.get(StandardAuthorizer.SUPER_USERS_CONFIG);
        if (value == null) {
            return Set.of();
        }
        Collection<String> names = List.of(value.toString().split(";"));
        return names.stream().map(String::trim).filter(s -> !s.isEmpty()).collect(Collectors.toSet());
    }
}
