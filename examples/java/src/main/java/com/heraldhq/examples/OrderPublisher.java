package com.heraldhq.examples;

import com.google.protobuf.Any;
import com.google.protobuf.Timestamp;
import herald.v1.Publisher.PublishRequest;
import herald.v1.Publisher.PublishResponse;
import herald.v1.PublisherServiceGrpc;
import io.grpc.CallCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import orders.v1.Orders.Channel;
import orders.v1.Orders.LineItem;
import orders.v1.Orders.OrderPlaced;

/**
 * Publishes orders.v1.OrderPlaced events to Herald over gRPC.
 *
 * <pre>
 *   OrderPublisher [--target localhost:9090] [--topic orders.eu] [--count 10] [--tls]
 *   (a bearer token, if the server wants one, comes from HERALD_TOKEN and needs --tls)
 * </pre>
 *
 * <p>For each order it prints one line: the order id and the event id Herald assigned (the id
 * browsers see). Each order has an idempotency key derived from its id, so retrying after
 * UNAVAILABLE or DEADLINE_EXCEEDED never publishes it twice; any other error is final.
 */
public final class OrderPublisher {
  private static final int MAX_ATTEMPTS = 5;

  public static void main(String[] args) throws InterruptedException {
    String target = "localhost:9090";
    String topic = "orders.eu";
    int count = 10;
    boolean tls = false;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--target":
          target = args[++i];
          break;
        case "--topic":
          topic = args[++i];
          break;
        case "--count":
          count = Integer.parseInt(args[++i]);
          break;
        case "--tls":
          tls = true;
          break;
        default:
          System.err.println("unknown argument " + args[i]);
          System.exit(2);
      }
    }
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);

    ManagedChannelBuilder<?> builder = ManagedChannelBuilder.forTarget(target);
    if (tls) {
      builder.useTransportSecurity();
    } else {
      builder.usePlaintext();
    }
    ManagedChannel channel = builder.build();
    try {
      PublisherServiceGrpc.PublisherServiceBlockingStub stub = PublisherServiceGrpc.newBlockingStub(channel);
      String token = System.getenv("HERALD_TOKEN");
      if (token != null && !token.isEmpty()) {
        stub = stub.withCallCredentials(new BearerToken(token));
      }
      for (int i = 0; i < count; i++) {
        OrderPlaced order = order(i);
        PublishRequest request =
            PublishRequest.newBuilder()
                .setTopic(topic)
                .setPayload(Any.pack(order)) // type URL type.googleapis.com/orders.v1.OrderPlaced
                .putAttributes("source", "java-example")
                .setIdempotencyKey("order-" + order.getOrderId())
                .build();
        PublishResponse response = publish(stub, request);
        out.println(order.getOrderId() + " " + response.getId());
      }
    } catch (StatusRuntimeException e) {
      System.err.println("publish failed: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      System.exit(1);
    } finally {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  /**
   * Publishes with retries: UNAVAILABLE (server or broker unreachable, server restarting) and
   * DEADLINE_EXCEEDED (the outcome is unknown) are retried with the same request, hence the same
   * idempotency key, so a retry of an event that did get through returns its first id. Every
   * other code (INVALID_ARGUMENT for a bad topic or payload, UNAUTHENTICATED, PERMISSION_DENIED,
   * ...) is final.
   */
  static PublishResponse publish(PublisherServiceGrpc.PublisherServiceBlockingStub stub, PublishRequest request)
      throws InterruptedException {
    for (int attempt = 1; ; attempt++) {
      try {
        return stub.withDeadlineAfter(5, TimeUnit.SECONDS).publish(request);
      } catch (StatusRuntimeException e) {
        Status.Code code = e.getStatus().getCode();
        boolean retryable = code == Status.Code.UNAVAILABLE || code == Status.Code.DEADLINE_EXCEEDED;
        if (!retryable || attempt == MAX_ATTEMPTS) {
          throw e;
        }
        Thread.sleep(100L << attempt);
      }
    }
  }

  /** The i-th example order: deterministic, so that a test can check what subscribers receive. */
  static OrderPlaced order(int i) {
    return OrderPlaced.newBuilder()
        .setOrderId(String.format("java-%04d", i))
        .setCustomer("Zoë Ñandú 山田 🚀 #" + i)
        .addItems(
            LineItem.newBuilder()
                .setSku("sku-café")
                .setName("Café crème ☕")
                .setQuantity(i % 5 + 1)
                .setUnitPriceCents(250))
        .addItems(
            LineItem.newBuilder()
                .setSku("sku-\"quoted\"\\")
                .setName("line\nbreak\ttab")
                .setQuantity(1)
                .setUnitPriceCents(1999))
        .setTotalCents((i % 5 + 1) * 250L + 1999L)
        .setCurrency("EUR")
        .setPlacedAt(Timestamp.newBuilder().setSeconds(1767225600L + i).setNanos(i * 1000))
        .setChannel(Channel.CHANNEL_MOBILE)
        .build();
  }

  /** Sends "authorization: Bearer token", and only over TLS. */
  static final class BearerToken extends CallCredentials {
    private static final Metadata.Key<String> AUTHORIZATION =
        Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
    private final String token;

    BearerToken(String token) {
      this.token = token;
    }

    @Override
    public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
      if (info.getSecurityLevel() != SecurityLevel.PRIVACY_AND_INTEGRITY) {
        applier.fail(Status.UNAUTHENTICATED.withDescription("refusing to send a token without TLS (use --tls)"));
        return;
      }
      Metadata headers = new Metadata();
      headers.put(AUTHORIZATION, "Bearer " + token);
      applier.apply(headers);
    }

    // Abstract in grpc-java before 1.52, gone after: no @Override, so it compiles with both.
    public void thisUsesUnstableApi() {}
  }
}
