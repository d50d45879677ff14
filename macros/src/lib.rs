//! The `#[cached]` attribute of [cachemere](https://docs.rs/cachemere). Depend on `cachemere`,
//! which re-exports it; the generated code calls into that crate.

mod attr;
mod context;
mod expand;
mod shape;
mod sig;

use proc_macro::TokenStream;

/// Caches a function's results. See the `cachemere` crate for the options and the helpers.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_tokens = proc_macro2::TokenStream::from(item.clone());
    let function: syn::ItemFn = match syn::parse(item) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new_spanned(
                &item_tokens,
                "`#[cached]` goes on a function, an `async fn`, or a method in an inherent `impl` block",
            );
            return error.to_compile_error().into();
        }
    };
    // Parse the options and the signature, and report every error of both at once.
    let options = syn::parse::<attr::Options>(args);
    let analysis = options
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|options| sig::analyze(&function, options, context::place(&function.sig.ident)));
    match (options, analysis) {
        (Ok(options), Ok(analysis)) => expand::expand(&function, &options, &analysis).into(),
        (Err(error), _) | (Ok(_), Err(error)) => {
            // Emit the function unchanged beside the errors, so they are the only ones reported.
            let mut tokens = error.to_compile_error();
            tokens.extend(quote::quote!(#function));
            tokens.into()
        }
    }
}
