// A minimal Logstash-like HTTP receiver on Netty 4, the stack real Logstash's http input runs.
//
//     java -cp build:NETTY_JARS HttpReceiver PORT [CERT.pem KEY.pkcs8.pem]
//
// Listens on 127.0.0.1:PORT (0 = any free port) and prints "listening on PORT". With a
// certificate and an unencrypted PKCS#8 key it speaks TLS through the JDK provider with
// Logstash's default protocols (TLSv1.2, TLSv1.3) and cipher suites. The pipeline is the http
// input's: SslHandler, HttpServerCodec, HttpContentDecompressor (gunzips Content-Encoding: gzip),
// HttpObjectAggregator (100 MiB), then a handler answering every request 200 "ok", keep-alive.
// Nothing is added to answer a peer's close_notify or to close idle connections: what a client
// meets here is what it meets at a real Logstash (under TLS 1.3 the JDK engine does not answer
// a close_notify, and the connection stays open until the client closes the socket).
//
// Prints, one line each: "events +COUNT total TOTAL" for every request (COUNT: non-empty ndjson
// lines, or the elements of a JSON array), "tls PROTOCOL with PEER" after a handshake,
// "close_notify received from PEER", "connection closed PEER", "connection error: ...".
// It exits when its stdin closes, so it never outlives the test that started it.

import io.netty.bootstrap.ServerBootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelPipeline;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.SimpleChannelInboundHandler;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import io.netty.handler.codec.http.DefaultFullHttpResponse;
import io.netty.handler.codec.http.FullHttpRequest;
import io.netty.handler.codec.http.FullHttpResponse;
import io.netty.handler.codec.http.HttpContentDecompressor;
import io.netty.handler.codec.http.HttpHeaderNames;
import io.netty.handler.codec.http.HttpHeaderValues;
import io.netty.handler.codec.http.HttpObjectAggregator;
import io.netty.handler.codec.http.HttpResponseStatus;
import io.netty.handler.codec.http.HttpServerCodec;
import io.netty.handler.codec.http.HttpUtil;
import io.netty.handler.codec.http.HttpVersion;
import io.netty.handler.ssl.SslCloseCompletionEvent;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.netty.handler.ssl.SslHandshakeCompletionEvent;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;
import io.netty.handler.ssl.SupportedCipherSuiteFilter;
import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

public final class HttpReceiver {
    private static final int MAX_CONTENT_LENGTH = 100 * 1024 * 1024;
    private static final AtomicLong TOTAL = new AtomicLong();
    /** Logstash's defaults for ssl_supported_protocols and ssl_cipher_suites (its http input
     * sets both on the SslContextBuilder; left alone, Netty 4.1.48 would not offer TLSv1.3). */
    private static final String[] PROTOCOLS = {"TLSv1.2", "TLSv1.3"};
    private static final String[] CIPHER_SUITES = {
        "TLS_AES_256_GCM_SHA384",
        "TLS_AES_128_GCM_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    };

    public static void main(String[] args) throws Exception {
        if (args.length != 1 && args.length != 3) {
            System.err.println("usage: HttpReceiver PORT [CERT.pem KEY.pkcs8.pem]");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        SslContext tls = null;
        if (args.length == 3) {
            tls = SslContextBuilder.forServer(new File(args[1]), new File(args[2]))
                    .sslProvider(SslProvider.JDK)
                    .protocols(PROTOCOLS)
                    .ciphers(Arrays.asList(CIPHER_SUITES), SupportedCipherSuiteFilter.INSTANCE)
                    .build();
        }
        final SslContext context = tls;
        EventLoopGroup boss = new NioEventLoopGroup(1);
        EventLoopGroup workers = new NioEventLoopGroup(2);
        ServerBootstrap bootstrap = new ServerBootstrap()
                .group(boss, workers)
                .channel(NioServerSocketChannel.class)
                .childHandler(new ChannelInitializer<SocketChannel>() {
                    @Override
                    protected void initChannel(SocketChannel channel) {
                        ChannelPipeline pipeline = channel.pipeline();
                        if (context != null) {
                            pipeline.addLast(context.newHandler(channel.alloc()));
                        }
                        pipeline.addLast(new HttpServerCodec());
                        pipeline.addLast(new HttpContentDecompressor());
                        pipeline.addLast(new HttpObjectAggregator(MAX_CONTENT_LENGTH));
                        pipeline.addLast(new Answer());
                    }
                });
        Channel server = bootstrap.bind(new InetSocketAddress("127.0.0.1", port)).sync().channel();
        int bound = ((InetSocketAddress) server.localAddress()).getPort();
        say("listening on " + bound);
        waitForStdinToClose();
        server.close().await(2000);
        boss.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
        workers.shutdownGracefully(0, 0, TimeUnit.MILLISECONDS);
        System.exit(0);
    }

    private static void waitForStdinToClose() {
        byte[] sink = new byte[4096];
        try {
            while (System.in.read(sink) >= 0) {
                // whatever arrives is ignored; only the end of stdin matters
            }
        } catch (IOException ignored) {
            // a broken stdin means the parent is gone: stop as well
        }
    }

    private static synchronized void say(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** Answers every request 200 "ok" (keep-alive when the client keeps it) and counts events. */
    private static final class Answer extends SimpleChannelInboundHandler<FullHttpRequest> {
        @Override
        protected void channelRead0(ChannelHandlerContext ctx, FullHttpRequest request) {
            String body = request.content().toString(StandardCharsets.UTF_8);
            long count = countEvents(body);
            long total = TOTAL.addAndGet(count);
            say("events +" + count + " total " + total);
            ByteBuf ok = Unpooled.copiedBuffer("ok", StandardCharsets.UTF_8);
            FullHttpResponse response =
                    new DefaultFullHttpResponse(HttpVersion.HTTP_1_1, HttpResponseStatus.OK, ok);
            response.headers().set(HttpHeaderNames.CONTENT_TYPE, "text/plain");
            response.headers().setInt(HttpHeaderNames.CONTENT_LENGTH, ok.readableBytes());
            if (HttpUtil.isKeepAlive(request)) {
                response.headers().set(HttpHeaderNames.CONNECTION, HttpHeaderValues.KEEP_ALIVE);
                ctx.writeAndFlush(response);
            } else {
                ctx.writeAndFlush(response).addListener(ChannelFutureListener.CLOSE);
            }
        }

        /** Says when the peer's close_notify arrives, and passes the event on untouched. */
        @Override
        public void userEventTriggered(ChannelHandlerContext ctx, Object event) throws Exception {
            if (event instanceof SslHandshakeCompletionEvent
                    && ((SslHandshakeCompletionEvent) event).isSuccess()) {
                SslHandler tls = ctx.pipeline().get(SslHandler.class);
                say("tls " + tls.engine().getSession().getProtocol() + " with "
                        + ctx.channel().remoteAddress());
            } else if (event instanceof SslCloseCompletionEvent) {
                say("close_notify received from " + ctx.channel().remoteAddress());
            }
            super.userEventTriggered(ctx, event);
        }

        @Override
        public void channelInactive(ChannelHandlerContext ctx) throws Exception {
            say("connection closed " + ctx.channel().remoteAddress());
            super.channelInactive(ctx);
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            say("connection error: " + cause);
            ctx.close();
        }
    }

    /** Non-empty ndjson lines, or the elements of a JSON array body. */
    static long countEvents(String body) {
        String text = body.strip();
        if (text.startsWith("[")) {
            return countArrayElements(text);
        }
        long count = 0;
        for (String line : text.split("\n")) {
            if (!line.isBlank()) {
                count++;
            }
        }
        return count;
    }

    /** Top-level elements of a JSON array: commas at depth one outside strings, plus one. */
    private static long countArrayElements(String text) {
        int depth = 0;
        boolean inString = false;
        boolean escaped = false;
        boolean any = false;
        long commas = 0;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (inString) {
                if (escaped) {
                    escaped = false;
                } else if (c == '\\') {
                    escaped = true;
                } else if (c == '"') {
                    inString = false;
                }
                continue;
            }
            if (c == '"') {
                inString = true;
            } else if (c == '[' || c == '{') {
                depth++;
            } else if (c == ']' || c == '}') {
                depth--;
            } else if (c == ',' && depth == 1) {
                commas++;
            }
            if (depth >= 1 && !Character.isWhitespace(c) && !(depth == 1 && (c == '[' || c == ','))) {
                any = true;
            }
        }
        return any ? commas + 1 : 0;
    }
}
