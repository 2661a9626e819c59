// Parsing Herald's event data with the generated types. Herald sends each
// event's payload as protojson, which is exactly what fromJson reads, so a
// page gets a typed message (int64 as bigint, enums as numbers, timestamps
// as Timestamp) with no hand-written parsing.
import { fromJsonString } from "@bufbuild/protobuf";
import { CartUpdatedSchema, type CartUpdated } from "./gen/shop/v1/cart_pb";

// The SSE event name of a CartUpdated: its full protobuf name.
export const cartUpdated = CartUpdatedSchema.typeName;

export function parseCart(data: string): CartUpdated {
  return fromJsonString(CartUpdatedSchema, data);
}
