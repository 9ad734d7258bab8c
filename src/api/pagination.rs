//! fleet's pagination: pages of `wire::PAGE_SIZE` items of a sorted list, addressed by the
//! `nextPageToken` query parameter (`wire::PageToken`).

use crate::wire::{PAGE_SIZE, PageToken, param};

use super::ApiError;
use super::request::Params;

/// The page a request asks for: the first without a token.
pub fn requested(params: &Params) -> Result<PageToken, ApiError> {
    let Some(raw) = params.only(param::NEXT_PAGE_TOKEN)? else {
        return Ok(PageToken::FIRST);
    };
    let bad = |why: &str| ApiError::BadParameter {
        name: param::NEXT_PAGE_TOKEN,
        value: raw.to_owned(),
        why: why.to_owned(),
    };
    let token = PageToken::decode(raw).map_err(|_| bad("not a page token this API issued"))?;
    if token.limit != PAGE_SIZE {
        return Err(bad(&format!("its page size must be {PAGE_SIZE}")));
    }
    Ok(token)
}

/// The items of page `token` and the token of the next page, empty when no item follows.
pub fn page<T: Clone>(items: &[T], token: PageToken) -> (Vec<T>, String) {
    let range = token.range();
    let total = items.len();
    if range.start >= total {
        return (Vec::new(), String::new());
    }
    let next = if range.end < total {
        token.next().encode()
    } else {
        String::new()
    };
    (items[range.start..range.end.min(total)].to_vec(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(page: u16) -> PageToken {
        PageToken {
            limit: PAGE_SIZE,
            page,
        }
    }

    #[test]
    fn pages_cut_a_list_and_say_when_more_follows() {
        let items: Vec<u32> = (0..250).collect();
        let (first, next) = page(&items, PageToken::FIRST);
        assert_eq!(first, (0..100).collect::<Vec<_>>());
        assert_eq!(next, token(2).encode());
        let (third, next) = page(&items, token(3));
        assert_eq!(third, (200..250).collect::<Vec<_>>());
        assert_eq!(next, "");
        assert_eq!(page(&items, token(4)), (vec![], String::new()));
        // Exactly full: no token pointing at an empty page.
        let (full, next) = page(&(0..100).collect::<Vec<u32>>(), PageToken::FIRST);
        assert_eq!(full.len(), 100);
        assert_eq!(next, "");
        assert_eq!(
            page(&Vec::<u32>::new(), PageToken::FIRST),
            (vec![], String::new())
        );
    }

    #[test]
    fn tokens_of_another_page_size_or_garbage_are_refused_naming_the_value() {
        let params = |q: &str| Params::from_uri(&format!("/?{q}").parse().unwrap()).unwrap();
        assert_eq!(requested(&params("alt=json")).unwrap(), PageToken::FIRST);
        assert_eq!(
            requested(&params("nextPageToken=ZAACAA%3D%3D")).unwrap(),
            token(2)
        );
        let small = PageToken { limit: 10, page: 2 }.encode();
        for (query, message) in [
            (
                "nextPageToken=nope".to_owned(),
                "invalid value `nope` of query parameter `nextPageToken`: not a page token this API issued",
            ),
            (
                format!("nextPageToken={small}"),
                "invalid value `CgACAA==` of query parameter `nextPageToken`: its page size must be 100",
            ),
            (
                "nextPageToken=a&nextPageToken=b".to_owned(),
                "query parameter `nextPageToken` is given more than once",
            ),
        ] {
            assert_eq!(
                requested(&params(&query)).unwrap_err().to_string(),
                message,
                "{query}"
            );
        }
    }
}
