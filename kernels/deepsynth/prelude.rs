use deepsynth::prelude::*;
deepsynth::configure_threads();
// One build instead of two for a cell that ends in a plain `Debug` value. evcxr compiles such a
// cell first as `(value).evcxr_display();` and, when the type has no such method, a second
// time with `{:?}` formatting, which doubled the time of every cell ending in a number, string,
// vector or DataFrame. With this trait the first build succeeds: types with an `evcxr_display`
// of their own keep it (inherent methods come before trait methods), the rest print their
// `{:?}` text as `text/plain`, as evcxr's second build did. It lives here, in the kernel's
// cells, not in the library: in a plain evcxr kernel rustc would suggest it in every failed
// first build, and evcxr then reports that suggestion instead of falling back. An unsuffixed
// numeric literal (`1 + 1`) still takes two builds: rustc calls no method on `{integer}`.
trait DebugCellResult {
    fn evcxr_display(&self);
}
impl<T: std::fmt::Debug + ?Sized> DebugCellResult for T {
    fn evcxr_display(&self) {
        deepsynth::display::emit("text/plain", &format!("{self:?}"));
    }
}
