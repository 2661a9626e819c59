import { CartStatus } from "./gen/shop/v1/cart_pb";
import { cartUpdated, parseCart } from "./cart";

// Herald's HTTP address: ?herald=<url>, or the one the README starts. The
// page is served from another origin (npm start), so Herald must list this
// page's origin in --cors-origins, or the browser refuses the stream.
const herald = new URLSearchParams(location.search).get("herald") ?? "http://localhost:8080";
const topics = "shop.carts.>";

const out = document.getElementById("cart")!;
const state = document.getElementById("state")!;
const es = new EventSource(`${herald}/v1/events?topic=${topics}`);

es.onopen = () => {
  state.textContent = `subscribed to ${topics} on ${herald}`;
};
es.onerror = () => {
  // CLOSED: refused for good (a CORS refusal among others); otherwise the
  // browser retries by itself.
  state.textContent = es.readyState === EventSource.CLOSED
    ? `could not subscribe on ${herald}: is it started with --cors-origins ${location.origin}?`
    : `reconnecting to ${herald}… (is Herald running?)`;
};
es.addEventListener(cartUpdated, (e) => {
  const cart = parseCart((e as MessageEvent<string>).data);
  const items = cart.items.map((i) => `${i.quantity} × ${i.sku}`).join(", ");
  const total = Number(cart.totalCents) / 100; // int64 arrives as bigint
  out.textContent = `${cart.cartId}: ${items} — ${total.toFixed(2)} (${CartStatus[cart.status]})`;
});
