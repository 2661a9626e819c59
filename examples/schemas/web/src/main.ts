import { CartStatus } from "./gen/shop/v1/cart_pb";
import { cartUpdated, parseCart } from "./cart";

const out = document.getElementById("cart")!;
const es = new EventSource("/v1/events?topic=shop.carts.>");

es.addEventListener(cartUpdated, (e) => {
  const cart = parseCart((e as MessageEvent<string>).data);
  const items = cart.items.map((i) => `${i.quantity} × ${i.sku}`).join(", ");
  const total = Number(cart.totalCents) / 100; // int64 arrives as bigint
  out.textContent = `${cart.cartId}: ${items} — ${total.toFixed(2)} (${CartStatus[cart.status]})`;
});
