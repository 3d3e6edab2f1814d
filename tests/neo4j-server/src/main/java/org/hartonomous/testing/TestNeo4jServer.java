package org.hartonomous.testing;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.BoltConnectorInternalSettings;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.harness.Neo4j;
import org.neo4j.harness.Neo4jBuilder;
import org.neo4j.harness.Neo4jBuilders;

/**
 * Runs a real Neo4j 5 server in this JVM for the Python test suite.
 *
 * <p>Usage: {@code java -jar test-neo4j-server.jar WORKING_DIR [BOLT_PORT [DATA_DIR]]}. Port 0 (the
 * default) lets the operating system pick a free port, so parallel runs never race for one. Bolt
 * listens on 127.0.0.1 only, unencrypted, without authentication; the HTTP server is off.
 *
 * <p>Without DATA_DIR the databases live in a random folder under WORKING_DIR that the harness
 * deletes on close: every start is a fresh, empty server. With DATA_DIR they live there and are
 * kept, so a server started again on the same DATA_DIR has the data of the one before (a restart).
 *
 * <p>When the server accepts Bolt connections, one line {@code NEO4J_BOLT_URI bolt://127.0.0.1:PORT}
 * goes to stdout. The server stops on SIGTERM/SIGINT or when stdin reaches end of file: the
 * parent keeps stdin open, so a test run that dies, however it dies, never leaves this JVM behind.
 */
public final class TestNeo4jServer {
    static final String READY_PREFIX = "NEO4J_BOLT_URI ";

    /** Small: test graphs are tiny and the machine is shared with PostgreSQL and the tests. */
    private static final long PAGE_CACHE_BYTES = 64L * 1024 * 1024;

    /**
     * Bolt otherwise waits 5 s twice on shutdown for connections and its thread pool to drain;
     * a test server has nothing to drain once the tests are done, and stops in about a second.
     */
    private static final Duration BOLT_SHUTDOWN_WAIT = Duration.ofMillis(200);

    private final Neo4j server;
    private boolean closed;

    private TestNeo4jServer(Neo4j server) {
        this.server = server;
    }

    public static void main(String[] args) throws IOException {
        if (args.length < 1 || args.length > 3) {
            System.err.println("usage: TestNeo4jServer WORKING_DIR [BOLT_PORT [DATA_DIR]]");
            System.exit(2);
        }
        Path workingDirectory = Path.of(args[0]);
        int port = args.length >= 2 ? Integer.parseInt(args[1]) : 0;

        Neo4jBuilder builder = Neo4jBuilders.newInProcessBuilder(workingDirectory);
        if (args.length == 3) {
            builder = builder.withConfig(
                    GraphDatabaseSettings.data_directory, Path.of(args[2]).toAbsolutePath());
        }
        Neo4j neo4j = builder
                .withDisabledServer()
                .withConfig(BoltConnector.enabled, true)
                .withConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .withConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .withConfig(GraphDatabaseSettings.auth_enabled, false)
                .withConfig(GraphDatabaseSettings.pagecache_memory, PAGE_CACHE_BYTES)
                .withConfig(BoltConnectorInternalSettings.connection_shutdown_wait_time, BOLT_SHUTDOWN_WAIT)
                .withConfig(BoltConnectorInternalSettings.thread_pool_shutdown_wait_time, BOLT_SHUTDOWN_WAIT)
                .build();
        TestNeo4jServer running = new TestNeo4jServer(neo4j);
        Runtime.getRuntime().addShutdownHook(new Thread(running::close, "neo4j-shutdown"));

        System.out.println(READY_PREFIX + "bolt://127.0.0.1:" + neo4j.boltURI().getPort());
        System.out.flush();

        // Block until the parent closes stdin (or goes away), then stop.
        while (System.in.read() != -1) {
            // Input carries no meaning; only its end does.
        }
        running.close();
        System.exit(0);
    }

    /** Called by the main thread on end of stdin and by the shutdown hook on a signal. */
    private synchronized void close() {
        if (!closed) {
            closed = true;
            server.close();
        }
    }
}
