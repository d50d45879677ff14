//! How an argument's type takes part in a key: owned as it is, or one of the borrowed shapes
//! that are looked up borrowed and owned only on a miss.

use syn::{GenericArgument, PathArguments, Type, TypeReference};

/// The shape of one argument's type, as far as the key is concerned.
pub(crate) enum Shape<'a> {
    /// An owned type, stored as it is (cloned on a miss).
    Owned,
    /// `&T`: stored as `T::Owned`.
    Ref(&'a Type),
    /// `Cow<'_, T>`: stored as `T::Owned`.
    Cow(&'a Type),
    /// `Option<&T>`: stored as `Option<T::Owned>`.
    OptionRef(&'a Type),
    /// `Option<Cow<'_, T>>`: stored as `Option<T::Owned>`.
    OptionCow(&'a Type),
    /// `&[&T]`: stored as `SliceKey<T::Owned>` (a `Vec`).
    SliceOfRefs(&'a Type),
    /// `Vec<&T>`: stored as `SliceKey<T::Owned>`.
    VecOfRefs(&'a Type),
}

/// Classifies `ty`; a type that borrows in some other way is `Owned` and fails
/// [`borrows_elsewhere`].
pub(crate) fn shape(ty: &Type) -> Shape<'_> {
    match ungroup(ty) {
        Type::Reference(reference) => match ungroup(&reference.elem) {
            Type::Slice(slice) => match plain_ref(&slice.elem) {
                Some(elem) => Shape::SliceOfRefs(elem),
                None => Shape::Ref(&reference.elem),
            },
            _ => Shape::Ref(&reference.elem),
        },
        other => {
            if let Some(inner) = single_generic(other, "Option") {
                if let Some(elem) = plain_ref(inner) {
                    return Shape::OptionRef(elem);
                }
                if let Some(elem) = single_generic(inner, "Cow") {
                    return Shape::OptionCow(elem);
                }
            }
            if let Some(elem) = single_generic(other, "Cow") {
                return Shape::Cow(elem);
            }
            if let Some(inner) = single_generic(other, "Vec")
                && let Some(elem) = plain_ref(inner)
            {
                return Shape::VecOfRefs(elem);
            }
            Shape::Owned
        }
    }
}

/// Whether an `Owned`-shaped type still borrows (a reference or a lifetime other than
/// `'static` somewhere inside), which a stored key cannot.
pub(crate) fn borrows_elsewhere(ty: &Type) -> bool {
    use syn::visit::Visit;
    struct Finder(bool);
    impl<'ast> Visit<'ast> for Finder {
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                self.0 = true;
            }
        }
        fn visit_type_reference(&mut self, reference: &'ast TypeReference) {
            match &reference.lifetime {
                Some(lifetime) if lifetime.ident == "static" => {}
                _ => self.0 = true,
            }
            syn::visit::visit_type_reference(self, reference);
        }
    }
    let mut finder = Finder(false);
    finder.visit_type(ty);
    finder.0
}

/// `T` of a shared `&T` (not `&mut`).
fn plain_ref(ty: &Type) -> Option<&Type> {
    match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_none() => Some(&reference.elem),
        _ => None,
    }
}

/// `T` of `Name<T>` (or `Name<'a, T>`), where the path's last segment is `name`.
fn single_generic<'a>(ty: &'a Type, name: &str) -> Option<&'a Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(arguments) = &last.arguments else {
        return None;
    };
    let mut types = arguments.args.iter().filter_map(|argument| match argument {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let first = types.next()?;
    types.next().is_none().then_some(first)
}

/// A type passed through `macro_rules!` arrives wrapped in an invisible group.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// How a background computation (stale-while-revalidate, a soft timeout) gets its own copy of
/// an argument.
pub(crate) enum Background {
    /// `&T` with `T` borrowing nothing: `T::Owned` (by `ToOwned`), lent to the function.
    Owned,
    /// A type borrowing nothing: moved into the computation.
    Moved,
}

/// How `ty` is copied for a background computation; `None` if it borrows in a way that
/// cannot be copied (`Cow<'_, T>`, `Option<&T>`, a struct with a lifetime).
pub(crate) fn background(ty: &Type) -> Option<Background> {
    match ungroup(ty) {
        // `&'static T` is moved as it is.
        Type::Reference(reference)
            if reference
                .lifetime
                .as_ref()
                .is_some_and(|lifetime| lifetime.ident == "static") =>
        {
            Some(Background::Moved)
        }
        Type::Reference(reference)
            if reference.mutability.is_none() && !borrows_elsewhere(&reference.elem) =>
        {
            Some(Background::Owned)
        }
        other if !borrows_elsewhere(other) => Some(Background::Moved),
        _ => None,
    }
}
