// rstscope lab: the article's okhttp client. A connection pool, HTTP/1.1
// keep-alive, retryOnConnectionFailure as given; a request, a sleep longer
// than the server's keepalive_timeout, the same request again.
//
// Usage: java RstscopeClient URL WAIT_MS RETRY POOL_KEEPALIVE_MS LOCAL_IP [METHOD]
//
// Prints one line per request, machine-readable for rstscope:
//   RESULT n status=200 local=IP:PORT reused=false retried=false dropped=0
//   ERROR n local=IP:PORT reused=true retried=false dropped=0 :: java.io.IOException: ... (caused by ...)
// reused: the request first went out on a pooled connection; retried: it
// was sent again; dropped: pooled connections okhttp found unhealthy and
// closed without sending on them.
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.util.concurrent.TimeUnit;
import javax.net.SocketFactory;
import okhttp3.Call;
import okhttp3.Connection;
import okhttp3.ConnectionPool;
import okhttp3.EventListener;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;

public class RstscopeClient {
    /** Binds every new socket to the lab's client address (127.0.0.2). */
    static final class BoundFactory extends SocketFactory {
        private final InetAddress local;

        BoundFactory(InetAddress local) {
            this.local = local;
        }

        @Override
        public Socket createSocket() throws IOException {
            Socket s = new Socket();
            s.bind(new InetSocketAddress(local, 0));
            return s;
        }

        @Override
        public Socket createSocket(String host, int port) throws IOException {
            return new Socket(host, port, local, 0);
        }

        @Override
        public Socket createSocket(String host, int port, InetAddress la, int lp) throws IOException {
            return new Socket(host, port, la, lp);
        }

        @Override
        public Socket createSocket(InetAddress host, int port) throws IOException {
            return new Socket(host, port, local, 0);
        }

        @Override
        public Socket createSocket(InetAddress host, int port, InetAddress la, int lp) throws IOException {
            return new Socket(host, port, la, lp);
        }
    }

    /**
     * Tracks one call: whether the connection its request first went out on
     * came from the pool, whether the request was sent again (a retry), and
     * how many pooled connections okhttp acquired and dropped unused (its
     * health check for non-GET requests notices a closed one).
     */
    static final class Tracker extends EventListener {
        int connects, connectsAtAcquire = -1, acquired, sends;
        boolean pooled, firstReused;
        String local = "";

        @Override
        public void connectStart(Call call, InetSocketAddress addr, java.net.Proxy proxy) {
            connects++;
        }

        @Override
        public void connectionAcquired(Call call, Connection c) {
            pooled = connects == 0 || connects == connectsAtAcquire;
            connectsAtAcquire = connects;
            acquired++;
            Socket s = c.socket();
            local = s.getLocalAddress().getHostAddress() + ":" + s.getLocalPort();
        }

        @Override
        public void requestHeadersStart(Call call) {
            sends++;
            if (sends == 1) {
                firstReused = pooled;
            }
        }

        String fields() {
            return "local=" + local + " reused=" + firstReused + " retried=" + (sends > 1) + " dropped="
                    + Math.max(0, acquired - sends);
        }
    }

    static Tracker current;

    static String describe(Throwable e) {
        StringBuilder b = new StringBuilder(e.toString());
        for (Throwable c = e.getCause(); c != null && c != e; c = c.getCause()) {
            b.append(" (caused by ").append(c.toString()).append(")");
            if (c.getCause() == c) {
                break;
            }
        }
        return b.toString().replace('\n', ' ');
    }

    public static void main(String[] a) throws Exception {
        String url = a[0];
        long waitMs = Long.parseLong(a[1]);
        boolean retry = Boolean.parseBoolean(a[2]);
        long poolMs = Long.parseLong(a[3]);
        InetAddress local = InetAddress.getByName(a[4]);
        String method = a.length > 5 ? a[5] : "GET";
        OkHttpClient client = new OkHttpClient.Builder()
                .retryOnConnectionFailure(retry)
                .connectionPool(new ConnectionPool(5, poolMs, TimeUnit.MILLISECONDS))
                .socketFactory(new BoundFactory(local))
                .eventListenerFactory(call -> current = new Tracker())
                .connectTimeout(5, TimeUnit.SECONDS)
                .readTimeout(5, TimeUnit.SECONDS)
                .build();
        System.out.println("CLIENT okhttp " + okhttp3.internal.Version.userAgent() + " retryOnConnectionFailure=" + retry
                + " pool=" + poolMs + "ms method=" + method);
        for (int i = 1; i <= 2; i++) {
            if (i == 2) {
                System.out.println("SLEEP " + waitMs);
                Thread.sleep(waitMs);
            }
            Request.Builder rb = new Request.Builder().url(url);
            if (method.equals("POST")) {
                rb.post(RequestBody.create(MediaType.parse("text/plain"), "ping"));
            }
            Call call = client.newCall(rb.build());
            try (Response r = call.execute()) {
                r.body().string();
                Tracker t = current;
                System.out.println("RESULT " + i + " status=" + r.code() + " " + t.fields());
            } catch (IOException e) {
                Tracker t = current;
                System.out.println("ERROR " + i + " " + t.fields() + " :: " + describe(e));
            }
            System.out.flush();
        }
        System.exit(0);
    }
}
