// A server that reads the way InputStream.available() invites: read what
// available() reports, and wait while it reports 0. Answers one line per
// connection: OK or STALL, the bytes it got and the largest available() seen.
// Usage: java Avail PORT BYTES TIMEOUT_MS
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;

public class Avail {
  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    int bytes = Integer.parseInt(args[1]);
    long timeoutMs = Long.parseLong(args[2]);
    try (ServerSocket server = new ServerSocket(port, 50, InetAddress.getByName("127.0.0.1"))) {
      System.out.println("listening");
      System.out.flush();
      byte[] buf = new byte[65536];
      for (;;) {
        try (Socket s = server.accept()) {
          InputStream in = s.getInputStream();
          OutputStream out = s.getOutputStream();
          long deadline = System.currentTimeMillis() + timeoutMs;
          int got = 0;
          int maxAvailable = 0;
          while (got < bytes && System.currentTimeMillis() < deadline) {
            int n = in.available();
            maxAvailable = Math.max(maxAvailable, n);
            if (n == 0) {
              Thread.sleep(1);
              continue;
            }
            int r = in.read(buf, 0, Math.min(n, buf.length));
            if (r < 0) break;
            got += r;
          }
          String line = (got >= bytes ? "OK" : "STALL") + " got=" + got + " maxAvailable=" + maxAvailable + "\n";
          out.write(line.getBytes("US-ASCII"));
          out.flush();
        }
      }
    }
  }
}
