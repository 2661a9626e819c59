// Used by the example's test: parses one event's data (argv[2]) with the
// generated types and prints what a page would use, as JSON.
import { parseCart } from "./dist/cart.js";
const cart = parseCart(process.argv[2]);
console.log(JSON.stringify({
  cartId: cart.cartId,
  items: cart.items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
  status: cart.status,
  totalCents: cart.totalCents.toString(),
  totalIsBigint: typeof cart.totalCents === "bigint",
  updatedAtSeconds: cart.updatedAt ? cart.updatedAt.seconds.toString() : null,
}));
