/**
 * `.proto` files imported `with { type: "file" }` resolve to a path (a `/$bunfs/...` path inside
 * a `bun build --compile` binary), so proto-loader can read them wherever the code runs.
 */
declare module "*.proto" {
  const path: string;
  export default path;
}
